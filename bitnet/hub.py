"""The models setup_env.py knows, and their download from the Hugging Face Hub into
``<models root>/<local name>``.

``KNOWN_MODELS`` is bitnet.cpp's list of supported Hugging Face ids (its setup_env.py), less its
embedding models, plus the 2B4T's bf16 master weights: Hugging Face checkpoints that setup converts,
and the 2B4T's ``-gguf`` repository, whose ready-made ``ggml-model-i2_s.gguf`` needs no conversion.
Ids are matched without regard to case, as the Hub does (bitnet.cpp writes
``microsoft/BitNet-b1.58-2B-4T`` for the repository named ``microsoft/bitnet-b1.58-2B-4T``).

``download`` is a thin layer over ``huggingface_hub.snapshot_download`` (which shows its own
progress bars and skips files already downloaded at the same commit). It fetches only what is
used (for a checkpoint: JSON configs, safetensors weights, a SentencePiece ``tokenizer.model``;
for a GGUF repository: the GGUF file), and turns the library's exceptions into one-line
``BitnetError`` messages that say what to do: an unreachable Hub points to ``--model-dir``, an
unknown or gated repository to its name and to ``hf auth login``.

The endpoint comes from ``HF_ENDPOINT`` (read by huggingface_hub at import) unless ``endpoint`` is
passed; tests point it at a local fake hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bitnet.common import BitnetError, models_root

# What the converter may read from a checkpoint; everything else in a repo (other formats, images,
# GGUF files of other tools) is skipped.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model"]


@dataclass(frozen=True)
class KnownModel:
    repo_id: str     # as the Hub spells it
    local_name: str  # folder under the models root (bitnet.cpp's model_name)
    about: str       # one line for the list
    gguf: str = ""   # for a GGUF repository: the ready-made file to fetch (no conversion)

    @property
    def allow_patterns(self) -> list[str]:
        return [self.gguf] if self.gguf else ALLOW_PATTERNS


def _falcon3(size: str, instruct: bool) -> KnownModel:
    name = f"Falcon3-{size}{'-Instruct' if instruct else ''}-1.58bit"
    return KnownModel(f"tiiuae/{name}", name, f"Falcon3 {size} {'instruct' if instruct else 'base'}, llama arch")


def _falcon_e(size: str, variant: str) -> KnownModel:
    name = f"Falcon-E-{size}-{variant}"
    return KnownModel(f"tiiuae/{name}", name, f"Falcon-E {size} {variant.lower()}, llama arch")


KNOWN_MODELS: list[KnownModel] = [
    KnownModel("microsoft/bitnet-b1.58-2B-4T", "BitNet-b1.58-2B-4T", "BitNet b1.58 2B4T, packed ternary weights"),
    KnownModel("microsoft/bitnet-b1.58-2B-4T-gguf", "BitNet-b1.58-2B-4T",
               "BitNet b1.58 2B4T, bitnet.cpp's ready-made i2_s GGUF (no conversion)",
               gguf="ggml-model-i2_s.gguf"),
    KnownModel("microsoft/bitnet-b1.58-2B-4T-bf16", "bitnet-b1.58-2B-4T-bf16",
               "BitNet b1.58 2B4T, bf16 master weights (ternarized when converted)"),
    KnownModel("1bitLLM/bitnet_b1_58-large", "bitnet_b1_58-large", "0.7B, bitnet arch"),
    KnownModel("1bitLLM/bitnet_b1_58-3B", "bitnet_b1_58-3B", "3.3B, bitnet arch"),
    KnownModel("HF1BitLLM/Llama3-8B-1.58-100B-tokens", "Llama3-8B-1.58-100B-tokens", "Llama-3 8B, llama arch"),
    *(_falcon3(size, instruct) for size in ("1B", "3B", "7B", "10B") for instruct in (True, False)
      if instruct or size != "1B"),  # there is no Falcon3-1B-1.58bit base model
    *(_falcon_e(size, variant) for size in ("1B", "3B") for variant in ("Instruct", "Base")),
]


def find_known(repo_id: str) -> KnownModel | None:
    """The known model with this id (any case), or None."""
    wanted = repo_id.strip().rstrip("/").lower()
    return next((m for m in KNOWN_MODELS if m.repo_id.lower() == wanted), None)


def known_model(repo_id: str) -> KnownModel:
    """The known model with this id (any case); ``BitnetError`` with the list otherwise."""
    model = find_known(repo_id)
    if model is None:
        width = max(len(m.repo_id) for m in KNOWN_MODELS)
        listing = "\n".join(f"  {m.repo_id:<{width}}  {m.about}" for m in KNOWN_MODELS)
        raise BitnetError(f"unknown model '{repo_id}': --hf-repo takes one of these Hugging Face ids "
                          f"(for another checkpoint, download it and use --model-dir DIR):\n{listing}")
    return model


def local_dir_for(repo_id: str, root: Path | None = None) -> Path:
    """Where ``repo_id`` ("org/name") is stored: ``<root>/<local name>`` for a known model, else
    ``<root>/<name>`` (root: ``models_root()``)."""
    known = find_known(repo_id)
    name = known.local_name if known else repo_id.rstrip("/").split("/")[-1]
    return (root if root is not None else models_root()) / name


def download(repo_id: str, root: Path | None = None, *, endpoint: str | None = None,
             revision: str | None = None, allow_patterns: list[str] | None = None) -> Path:
    """Download ``repo_id`` into ``local_dir_for(repo_id, root)`` and return that directory.

    Only files matching ``allow_patterns`` (default: what the converter reads) are fetched; files
    already there from the same commit are not fetched again. Raise ``BitnetError`` when the repo
    id is malformed, the Hub cannot be reached, or the repository or revision is unknown or not
    accessible.
    """
    # Imported here: huggingface_hub is slow to import and only this step needs it.
    from huggingface_hub import errors, snapshot_download

    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise BitnetError(f"--hf-repo must look like ORG/NAME (e.g. microsoft/BitNet-b1.58-2B-4T), got '{repo_id}'")
    target = local_dir_for(repo_id, root)
    try:
        path = snapshot_download(repo_id, revision=revision, local_dir=target, endpoint=endpoint,
                                 allow_patterns=allow_patterns or ALLOW_PATTERNS)
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
