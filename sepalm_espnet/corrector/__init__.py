"""The corrector (paper §3.3) and its training targets.

- asr_teacher: Whisper transcripts of separated and clean speech (knowledge-distillation
  targets, stage 5) and the transcriber of scoring.
- text_norm: the one text normalisation and the WER built on it.

Nothing is imported here: the backends load Whisper, torch and CTranslate2, which every user
of the package should not pay for.
"""
