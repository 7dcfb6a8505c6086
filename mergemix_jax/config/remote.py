"""Which URLs (gs://, s3://, ...) this installation can read through fsspec: shared by config
validation and the data readers (data/paths.py), so a bad URL is refused before anything runs."""

from __future__ import annotations

INSTALL_HINT = "pip install 'mergemix-jax[gcs]' (fsspec + gcsfs; s3:// needs s3fs), or mount the bucket (gcsfuse) and use the local path"


def url_problem(url: str) -> str | None:
    """Why `url` cannot be read here (fsspec or the protocol's package missing, unknown protocol), or None."""
    try:
        import fsspec
    except ImportError:
        return f"reading {url} needs fsspec: {INSTALL_HINT}"
    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        return f"reading {url} needs the package for {protocol}:// ({err}): {INSTALL_HINT}"
    except ValueError:
        return f"{url}: fsspec knows no filesystem for {protocol}://; use gs://, s3://, hf://, ... or a local path"
    return None
