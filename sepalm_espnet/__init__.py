"""sepalm_espnet: ESPnet-style recipe toolkit for SepALM."""

__version__ = "0.1.0"
