"""Corrector decoding speed: generated tokens/s, batched vs one utterance at a time, KV cache on vs off.

What stage 8 does per generation step (HF `generate`, greedy, left-padded batches), on random
LLaMA weights of two shapes:
- `mini`: the mini recipe's corrector (conf/tuning/train_cor_tinyllama_mini.yaml), with a
  prompt of 5 s of 50 Hz units plus the template (~300 tokens);
- `1b`: a ~1B-parameter LLaMA (hidden 2048, 16 layers, 16 heads, FFN 5632, 33k vocabulary),
  short prompt and few new tokens so that it finishes in minutes on 2 CPU cores.
Every run generates exactly `new_tokens` tokens for each of `batch` prompts (no early stop);
the time includes the prompt's forward pass, as an utterance's decoding does. Best of
`repeats`. Threads follow OMP_NUM_THREADS (torch's default).

    python bench/cor_speed.py                    # both shapes
    python bench/cor_speed.py --shapes mini --new_tokens 32
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

REPO = Path(__file__).resolve().parents[1]
MINI_CONFIG = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning/train_cor_tinyllama_mini.yaml"
ONE_B = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
             intermediate_size=5632, max_position_embeddings=2048)
SHAPES = {  # LLaMA options, vocabulary, prompt length, new tokens, repeats
    "mini": (yaml.safe_load(MINI_CONFIG.read_text())["model_conf"]["lm_config"], 600, 300, 64, 3),
    "1b": (ONE_B, 33000, 16, 4, 1),
}


def generate_seconds(lm, prompts: torch.Tensor, batch_size: int, new_tokens: int, use_cache: bool) -> float:
    config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                              use_cache=use_cache, eos_token_id=lm.config.vocab_size - 1, pad_token_id=0)
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, prompts.size(0), batch_size):
            batch = prompts[first:first + batch_size]
            output = lm.generate(input_ids=batch, attention_mask=torch.ones_like(batch), generation_config=config)
            assert output.size(1) == prompts.size(1) + new_tokens
    return time.perf_counter() - start


def bench_shape(name: str, batch: int, new_tokens: int | None, prompt_len: int | None) -> dict:
    lm_options, vocab, default_prompt, default_new, repeats = SHAPES[name]
    new_tokens = new_tokens or default_new
    prompt_len = prompt_len or default_prompt
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **lm_options)).eval()
    n_params = sum(p.numel() for p in lm.parameters())
    prompts = torch.randint(0, vocab - 1, (batch, prompt_len))
    generate_seconds(lm, prompts[:1, :8], 1, 2, True)  # warm-up
    rows = {}
    for use_cache in (True, False):
        for batch_size in (batch, 1):
            seconds = min(generate_seconds(lm, prompts, batch_size, new_tokens, use_cache) for _ in range(repeats))
            rows[(batch_size, use_cache)] = batch * new_tokens / seconds
            print(f"{name:>4} {n_params / 1e6:8.1f}M  batch {batch_size:>2}  cache {'on ' if use_cache else 'off'}  "
                  f"prompt {prompt_len:>4}  new {new_tokens:>3}  {seconds:8.2f} s  "
                  f"{rows[(batch_size, use_cache)]:9.1f} tok/s", flush=True)
    print(f"{name:>4} ratios: batched/unbatched cache on {rows[(batch, True)] / rows[(1, True)]:.2f}x, "
          f"cache off {rows[(batch, False)] / rows[(1, False)]:.2f}x; cache on/off batched "
          f"{rows[(batch, True)] / rows[(batch, False)]:.2f}x, unbatched {rows[(1, True)] / rows[(1, False)]:.2f}x",
          flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--batch", type=int, default=8, help="prompts; decoded in one batch or one at a time")
    parser.add_argument("--new_tokens", type=int, help="tokens generated per prompt (default: per shape)")
    parser.add_argument("--prompt_len", type=int, help="prompt tokens (default: per shape)")
    args = parser.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}")
    for name in args.shapes:
        bench_shape(name, args.batch, args.new_tokens, args.prompt_len)


if __name__ == "__main__":
    main()
