#!/usr/bin/env python3
# Copied from the team baselines (../shared/baselines/hf_baseline.py) so that it travels to the GPU machine.
"""Peer baseline: Hugging Face transformers + PyTorch on the same GPU, same shapes.

Run it on the GPU machine in the same call as the eaq benchmark, so ratios are
taken side by side. Random weights in the real architectures (DistilBERT with
DistilBertConfig() defaults, GPT-2 124M with GPT2Config() defaults): latency
and energy do not depend on the weight values.

Energy is the NVML total-energy counter (mJ) read around a timed window of at
least --min-seconds. Idle power is measured first and reported separately.

  python3 hf_baseline.py --model distilbert --precision fp16 --batch-sizes 1,32,128 --seq-len 128 --mode eager
  python3 hf_baseline.py --model gpt2 --precision fp16 --prompt-len 128 --new-tokens 256 --mode eager

Prints one JSON object per line.
"""
import argparse, json, time
import torch, pynvml


def nvml():
    pynvml.nvmlInit()
    return pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())


def idle_watts(h, seconds=2.0):
    torch.cuda.synchronize(); time.sleep(0.5)
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h); t0 = time.perf_counter()
    time.sleep(seconds)
    return (pynvml.nvmlDeviceGetTotalEnergyConsumption(h) - e0) / 1000 / (time.perf_counter() - t0)


def timed(h, fn, min_seconds):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.5:
        fn(); n += 1
    torch.cuda.synchronize()
    n = max(10, int(n * min_seconds / (time.perf_counter() - t0)))
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h); t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(h) - e0
    return n, dt, mj


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["distilbert", "bert", "gpt2"], default="distilbert")
    p.add_argument("--precision", choices=["fp32", "tf32", "fp16", "bf16"], default="fp16")
    p.add_argument("--mode", choices=["eager", "compile"], default="eager")
    p.add_argument("--batch-sizes", default="1,32,128")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="HF attention implementation")
    p.add_argument("--no-cudnn-sdp", action="store_true", help="disable the cuDNN SDPA backend")
    a = p.parse_args()
    import transformers as T
    torch.manual_seed(0)
    if a.no_cudnn_sdp:
        torch.backends.cuda.enable_cudnn_sdp(False)
    h = nvml()
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[a.precision]
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    base = dict(peer=f"hf-transformers-{T.__version__}/torch-{torch.__version__}", mode=a.mode, attn=a.attn, cudnn_sdp=not a.no_cudnn_sdp, model=a.model,
                precision=a.precision, gpu=torch.cuda.get_device_name(), idle_w=round(idle_watts(h), 1))
    if a.model in ("distilbert", "bert"):
        cfg = T.DistilBertConfig(num_labels=2) if a.model == "distilbert" else T.BertConfig(num_labels=2)
        cls = T.DistilBertForSequenceClassification if a.model == "distilbert" else T.BertForSequenceClassification
        cfg._attn_implementation = a.attn
        m = cls(cfg).cuda().eval().to(dtype)
        if a.mode == "compile":
            m = torch.compile(m, mode="max-autotune")
        for bs in [int(x) for x in a.batch_sizes.split(",")]:
            ids = torch.randint(1000, cfg.vocab_size, (bs, a.seq_len), device="cuda")
            mask = torch.ones_like(ids)
            with torch.inference_mode():
                n, dt, mj = timed(h, lambda: m(input_ids=ids, attention_mask=mask), a.min_seconds)
            print(json.dumps(dict(base, batch_size=bs, seq_len=a.seq_len, iters=n,
                                  ms_per_batch=round(1000 * dt / n, 4), samples_per_s=round(bs * n / dt, 1),
                                  mj_per_sample=round(mj / (bs * n), 3), mean_w=round(mj / 1000 / dt, 1))), flush=True)
    else:
        cfg = T.GPT2Config()
        cfg._attn_implementation = a.attn
        m = T.GPT2LMHeadModel(cfg).cuda().eval().to(dtype)
        ids = torch.randint(0, 50000, (1, a.prompt_len), device="cuda")
        with torch.inference_mode():
            n, dt, mj = timed(h, lambda: m(ids), a.min_seconds)
            print(json.dumps(dict(base, phase="prefill", prompt_len=a.prompt_len, iters=n,
                                  ms_per_prompt=round(1000 * dt / n, 4), mj_per_prompt=round(mj / n, 2))), flush=True)
            out = m(ids, use_cache=True)
            state = dict(past=out.past_key_values, tok=out.logits[:, -1:].argmax(-1))

            def step():
                o = m(state["tok"], past_key_values=state["past"], use_cache=True)
                state["past"], state["tok"] = o.past_key_values, o.logits[:, -1:].argmax(-1)
            for _ in range(8):
                step()
            torch.cuda.synchronize()
            e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h); t0 = time.perf_counter()
            for _ in range(a.new_tokens):
                step()
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0; mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(h) - e0
            print(json.dumps(dict(base, phase="decode", batch_size=1, new_tokens=a.new_tokens,
                                  tokens_per_s=round(a.new_tokens / dt, 1), mj_per_token=round(mj / a.new_tokens, 2),
                                  mean_w=round(mj / 1000 / dt, 1))), flush=True)


if __name__ == "__main__":
    main()
