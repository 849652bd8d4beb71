"""nbclient's NotebookClient, waiting for kernel messages in slices of 1 s.

pyzmq's asyncio poll can miss the edge-triggered wake-up of a socket; the kernel's message then
waits for the end of the whole timeout: on the shell channel, the cell's timeout (900 s in
tests/test_colab.py). We saw it on the widget cells, about one run in two, in both the course's venv
and the Colab-pinned one, and nbclient reports nothing (the reply is read when the timeout ends). A
blocking client (nbval's) is not affected. Polling in slices of 1 s bounds the delay to a second.

Imported by tests/test_colab.py and tests/test_widgets.py, also from the Colab-pinned venv's Python
(the tests folder is put on its ``sys.path``): it needs only nbclient.
"""
import inspect
import queue
import time

from nbclient import NotebookClient


def sliced(get_msg):
    """``get_msg(timeout)`` of a kernel channel, polled in slices of at most 1 s until ``timeout``."""
    async def get(timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                msg = get_msg(timeout=step)
                return (await msg) if inspect.isawaitable(msg) else msg
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
    return get


class Client(NotebookClient):
    """A NotebookClient whose shell and iopub channels wait in slices (module docstring)."""

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = sliced(channel.get_msg)
        return kc
