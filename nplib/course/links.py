"""Where the course lives: the one constant the Colab badges, the install cell and the site are built from.

Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 0. Re-exported by
:mod:`nplib.notebook`.
"""
from __future__ import annotations

__all__ = ["REPO_URL", "COLAB_EXTRA", "colab_install_hint"]

#: Where the course lives: the ONE place that names the repository. The Colab badges and the Colab
#: install cell of every notebook are written from it (see README.md, "Colab"); change it here.
REPO_URL = "https://github.com/nplib/noprop-course"

#: The extra that the Colab install names: what a Colab runtime lacks (empty today, see pyproject.toml).
COLAB_EXTRA = "colab"


def colab_install_hint(repo_url: str | None = None) -> str:
    """The arguments that follow ``%pip `` in every notebook's Colab install cell.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 0. Installs nplib from
    ``REPO_URL`` (``repo_url`` overrides it) with the ``colab`` extra and nothing else: every other
    requirement is already satisfied by Colab's preinstalled packages, so pip upgrades none of them
    (Colab does not render ipywidgets 8 widgets, and upgrading ipykernel in a live runtime can crash
    it). tests/test_colab.py checks that this install moves none of Colab's pins.
    """
    url = (REPO_URL if repo_url is None else repo_url).rstrip("/")
    if not url.startswith(("https://", "http://", "file://", "ssh://")) or "'" in url or " " in url:
        raise ValueError(f"repo_url must be an http(s), ssh or file URL without quotes or spaces, got {url!r}")
    return f"install -q 'nplib[{COLAB_EXTRA}] @ git+{url}'"
