"""Synthesizer (paper §3.4): DAC codec tokens, G2P of the corrected text, codec language models.

Submodules are imported where used: importing dac alone takes seconds.
"""
