#!/usr/bin/env python3
"""Random-weight models in the real architectures, for timing (latency and energy do not depend
on weight values): DistilBertConfig() and BertConfig() defaults with 2 labels, GPT2Config().
Runs on the GPU machine (torch + transformers); writes Hugging Face folders under --out."""
import argparse
import os
import shutil

import torch
import transformers as T


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="/tmp/eaq-models")
    p.add_argument("--which", default="distilbert,gpt2")
    a = p.parse_args()
    torch.manual_seed(0)
    builders = {
        "distilbert": lambda: T.DistilBertForSequenceClassification(T.DistilBertConfig(num_labels=2)),
        "bert": lambda: T.BertForSequenceClassification(T.BertConfig(num_labels=2)),
        "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config()),
    }
    for name in a.which.split(","):
        model = builders[name]().eval()
        folder = os.path.join(a.out, name)
        model.save_pretrained(folder, safe_serialization=True)
        if name == "gpt2":
            # The real GPT-2 tokenizer files, so eaq can tokenize a prompt for this folder.
            src = os.path.join(os.path.dirname(__file__), "..", "..", "data", "tokenizers", "gpt2")
            for f in os.listdir(src):
                shutil.copy(os.path.join(src, f), folder)
        print(f"wrote {folder} ({sum(t.numel() for t in model.parameters()) / 1e6:.1f}M parameters)")


if __name__ == "__main__":
    main()
