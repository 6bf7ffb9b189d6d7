#!/usr/bin/env python3
"""Turns a benchmark run's eaq result files and peer-baseline JSON lines into the markdown that
goes into docs/results.md: one table per model, eaq beside the peer measured in the same call."""
import argparse
import glob
import json
import os


def load_results(root):
    rows = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.json"), recursive=True)):
        with open(path) as f:
            r = json.load(f)
        if "metrics" not in r:  # e.g. an int8-static calibration file saved beside the results
            continue
        m, md, c = r["metrics"], r["metadata"], r["configuration"]
        rows.append(dict(model=os.path.basename(c["model"].rstrip("/")), precision=c["precision"],
                         batch=c["batch_size"], graphs=c.get("cuda_graphs"), m=m, md=md, c=c))
    return rows


def fmt(x, digits=3):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def main_kernel(kernel_path):
    """The GEMM path most Linear layers ran ("<kernel> xN" entries joined by '; ')."""
    import re
    entries = [e.strip() for e in kernel_path.split(";") if re.search(r" x\d+$", e.strip())]
    if not entries:
        return kernel_path.split(";")[0]
    return max(entries, key=lambda e: int(e.rsplit(" x", 1)[1]))


def agreement(m):
    """Energy from integrated power samples relative to the counter's, over the same window."""
    c, s = m.get("counter_energy_j"), m.get("energy_from_samples_j")
    return f"{100 * (s - c) / c:+.1f}%" if c and s else "n/a"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--peer", nargs="*", default=[])
    p.add_argument("--title", default="")
    a = p.parse_args()
    rows = load_results(a.results)
    peers = []
    for path in a.peer:
        if os.path.exists(path):
            with open(path) as f:
                peers += [json.loads(line) for line in f if line.startswith("{")]
    if not rows:
        print("no results")
        return
    md = rows[0]["md"]
    order = ["fp32", "tf32", "fp16", "fp16-autocast", "bf16", "int8", "int8-static", "int8-wo", "fp8"]
    rows.sort(key=lambda r: (order.index(r["precision"]) if r["precision"] in order else 99,
                             r["batch"], not r["graphs"]))
    print(f"### {a.title}\n")
    print(f"- card: {md.get('gpu_name')} (driver {md.get('driver_version')}, power limit "
          f"{md.get('gpu_power_limit_w')} W); date {md.get('timestamp', '')[:10]}; eaq commit "
          f"{md.get('git_commit')}")
    if peers:
        print(f"- peer: {peers[0].get('peer')}, run in the same call; idle power seen by the peer "
              f"{peers[0].get('idle_w')} W")
    print()
    gen = [r for r in rows if r["c"].get("task") == "generation"]
    if gen:
        print("| model | precision | batch | sync each step | time to first token (ms) | prefill mJ per prompt | "
              "decode tokens/s | ms per step (median) | mJ per token | dynamic mJ per token | mean W | energy quality |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in gen:
            m = r["m"]
            lat = m.get("median_latency") or m.get("mean_latency")
            print(f"| {r['model']} | {r['precision']} | {r['batch']} | {'yes' if r['c'].get('sync_each_iter') else 'no'} | "
                  f"{fmt(m.get('time_to_first_token_s', 0) * 1e3)} | {fmt(m.get('prefill_energy_per_prompt_mj'))} | "
                  f"{fmt(m.get('decode_tokens_per_s'))} | {fmt(lat * 1e3 if lat else None)} | "
                  f"{fmt(m.get('energy_per_inference_mj'))} | {fmt(m.get('dynamic_energy_per_inference_mj'))} | "
                  f"{fmt(m.get('mean_power_w'))} | {m.get('energy_quality')} / {m.get('prefill_energy_quality')} |")
    rows = [r for r in rows if r["c"].get("task") != "generation"]
    if rows:
        print("| model | precision | batch | graphs | median latency (ms) | samples/s | mJ per sample | "
              "dynamic mJ | mean W | samples vs counter | accuracy | energy quality | GEMM path |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["metrics"] if "metrics" in r else r["m"]
        lat = m.get("median_latency") or m.get("mean_latency")
        print(f"| {r['model']} | {r['precision']} | {r['batch']} | {'on' if r['graphs'] else 'off'} | "
              f"{fmt(lat * 1e3 if lat else None)} | {fmt(m.get('throughput'))} | "
              f"{fmt(m.get('energy_per_inference_mj'))} | {fmt(m.get('dynamic_energy_per_inference_mj'))} | "
              f"{fmt(m.get('mean_power_w'))} | {agreement(m)} | {fmt(m.get('accuracy'))} | {m.get('energy_quality')} | "
              f"{main_kernel(r['md'].get('kernel_path', ''))} |")
    encoder_peers = [q for q in peers if "ms_per_batch" in q]
    generation_peers = [q for q in peers if "phase" in q]
    if encoder_peers:
        print("\nPeer (Hugging Face transformers + PyTorch), same GPU, same call:\n")
        print("| model | precision | mode | batch | ms per batch | samples/s | mJ per sample | mean W |")
        print("|---|---|---|---|---|---|---|---|")
        for q in encoder_peers:
            print(f"| {q['model']} | {q['precision']} | {q['mode']} | {q['batch_size']} | "
                  f"{q['ms_per_batch']} | {fmt(q['samples_per_s'])} | {q['mj_per_sample']} | {q['mean_w']} |")
    if generation_peers:
        print("\nPeer (Hugging Face transformers + PyTorch, greedy generate), same GPU, same call:\n")
        print("| model | precision | mode | attention | phase | batch | ms per prompt | mJ per prompt "
              "| decode tokens/s | mJ per token | mean W |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for q in generation_peers:
            print(f"| {q['model']} | {q['precision']} | {q['mode']} | {q.get('attn', '')} | {q['phase']} | "
                  f"{q.get('batch_size', 1)} | {q.get('ms_per_prompt', '')} | {q.get('mj_per_prompt', '')} | "
                  f"{fmt(q.get('tokens_per_s'))} | {q.get('mj_per_token', '')} | {q.get('mean_w', '')} |")

if __name__ == "__main__":
    main()
