"""What only the notebooks need: figures (:mod:`nplib.course.plots`), the widget explorers
(:mod:`nplib.course.widgets`), diagrams drawn from the code (:mod:`nplib.course.diagrams`), and the student
copies (:mod:`nplib.course.student`).
"""
