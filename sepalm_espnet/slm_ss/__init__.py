"""SLM-SS (arXiv 2601.19533), the generative separator: a mixture encoder, an AR decoder over
both speakers' first codebook in serialized order and a NAR model for the other codebooks.

Submodules are imported where used: the task, the inference wrapper and the encoders pull in
ESPnet, codecs or transformers.
"""
