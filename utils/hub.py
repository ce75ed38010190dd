"""Download a checkpoint from the Hugging Face Hub into ``<models root>/<repo name>``.

A thin layer over ``huggingface_hub.snapshot_download`` (which shows its own progress bars and
skips files already downloaded at the same commit). It fetches only what the converter reads
(JSON configs, safetensors weights, a SentencePiece ``tokenizer.model``), and turns the library's
exceptions into one-line ``BitnetError`` messages that say what to do: an unreachable Hub points to
``--model-dir``, an unknown or gated repository to its name and to ``hf auth login``.

The endpoint comes from ``HF_ENDPOINT`` (read by huggingface_hub at import) unless ``endpoint`` is
passed; tests point it at a local fake hub.
"""

from __future__ import annotations

from pathlib import Path

from utils.common import BitnetError, models_root

# What the converter may read from a checkpoint; everything else in a repo (other formats, images,
# GGUF files of other tools) is skipped.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model"]


def local_dir_for(repo_id: str, root: Path | None = None) -> Path:
    """Where ``repo_id`` ("org/name") is stored: ``<root>/<name>`` (root: ``models_root()``)."""
    return (root if root is not None else models_root()) / repo_id.rstrip("/").split("/")[-1]


def download(repo_id: str, root: Path | None = None, *, endpoint: str | None = None,
             revision: str | None = None) -> Path:
    """Download ``repo_id`` into ``local_dir_for(repo_id, root)`` and return that directory.

    Files already there from the same commit are not fetched again. Raise ``BitnetError`` when
    the repo id is malformed, the Hub cannot be reached, or the repository or revision is unknown
    or not accessible.
    """
    # Imported here: huggingface_hub is slow to import and only this step needs it.
    from huggingface_hub import errors, snapshot_download

    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise BitnetError(f"--hf-repo must look like ORG/NAME (e.g. microsoft/BitNet-b1.58-2B-4T), got '{repo_id}'")
    target = local_dir_for(repo_id, root)
    try:
        path = snapshot_download(repo_id, revision=revision, local_dir=target, endpoint=endpoint,
                                 allow_patterns=ALLOW_PATTERNS)
    except errors.GatedRepoError as e:
        raise BitnetError(
            f"{repo_id} is gated on the Hugging Face Hub: accept its terms on the model page and "
            f"log in with `hf auth login` ({_first_line(e)})") from e
    except errors.RepositoryNotFoundError as e:
        raise BitnetError(
            f"repository {repo_id} not found on the Hugging Face Hub: check the name "
            f"(private repos need `hf auth login`)") from e
    except errors.RevisionNotFoundError as e:
        raise BitnetError(f"revision {revision or 'main'} not found in {repo_id}") from e
    except (errors.LocalEntryNotFoundError, errors.IncompleteSnapshotError, errors.HfHubHTTPError,
            OSError) as e:
        # No connection, a proxy/DNS failure, or the Hub answering 5xx all end here; so does an
        # unreachable Hub with only part of the files on disk.
        raise BitnetError(
            f"could not reach the Hugging Face Hub ({_first_line(e)}); download the checkpoint "
            f"elsewhere and use --model-dir DIR") from e
    return Path(path)


def _first_line(e: BaseException) -> str:
    """What happened, in one line: the underlying error (e.g. ``ConnectError: [Errno 111]
    Connection refused``) when the library wrapped one, else the first line of its message."""
    cause = e.__cause__ or e
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__
