// Translation unit of the shared library libbitnet: the code comes whole from bitnet_core.
