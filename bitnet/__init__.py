"""bitnet: run 1.58-bit (ternary) language models on a CPU.

    from bitnet import BitNetModel
    model = BitNetModel.from_pretrained("models/bitnet-tiny")   # a GGUF, a checkpoint dir or an HF id
    print(model.generate("Create a new", max_new_tokens=32))

The package holds the engine (``lib/libbitnet.so`` and the tools in ``bin/`` when installed from a
wheel; a clone's ``build/`` otherwise), its ctypes bindings (``bitnet.bindings``), the model API
(``bitnet.model``), the converter from Hugging Face checkpoints (``bitnet.convert``), the tensor
formats (``bitnet.formats``), the TL kernel generator (``bitnet.codegen``), the Hub download and
the build (``bitnet.hub``, ``bitnet.build``) and the OpenAI-compatible server (``bitnet.server``).
"""

from bitnet.errors import BitnetError, ContextLengthError, InvalidArgumentError, ModelLoadError
from bitnet.model import BitNetModel, GenerationConfig

__all__ = ["BitNetModel", "GenerationConfig", "BitnetError", "ModelLoadError", "InvalidArgumentError",
           "ContextLengthError"]
__version__ = "0.1.0"
