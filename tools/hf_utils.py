"""Shared helpers for the tools/ scripts (make_golden.py, train_bundled_models.py).

Pure-Python parts (sliding-window plan, safetensors header reading, packing, logging) need only
the standard library so they can be tested anywhere; the Hugging Face parts import torch and
transformers inside the functions that need them.

Written against transformers 5.x (tested API surface kept small) and still compatible with 4.4x.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import platform
import struct
import sys
import tarfile
import tempfile
import time
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Sliding-window perplexity, exactly as https://huggingface.co/docs/transformers/perplexity
# ---------------------------------------------------------------------------------------------

PERPLEXITY_METHOD = (
    "Hugging Face 'Perplexity of fixed-length models' (docs/source/en/perplexity.md): "
    "prev_end=0; for begin in range(0, seq_len, stride): end=min(begin+context, seq_len); "
    "trg_len=end-prev_end; window=ids[begin:end]; labels=window.clone(); labels[:-trg_len]=-100; "
    "loss=model(window, labels=labels).loss (mean CE over the labels that survive the internal "
    "shift by one); num_loss_tokens=(labels!=-100).sum()-1; nll_sum+=loss*num_loss_tokens; "
    "n_tokens+=num_loss_tokens; prev_end=end; stop when end==seq_len. ppl_doc=exp(nll_sum/n_tokens). "
    "Note: for every window after the first, the loss is a mean over trg_len tokens but is weighted "
    "by trg_len-1 (the doc's own bookkeeping). 'exact' instead sums each token's NLL once: every "
    "token t>=1 is scored exactly once, in the window where it is a target, conditioned on "
    "ids[begin:t]; ppl_exact=exp(sum/(seq_len-1))."
)


def sliding_windows(seq_len: int, context: int, stride: int) -> list[dict]:
    """Window plan of the Hugging Face perplexity loop.

    Each window: begin, end (exclusive), trg_len, the global positions it scores
    [score_begin, end) (targets that survive HF's internal label shift), score_count, and
    doc_weight = num_valid_labels - 1 (the doc's num_loss_tokens for batch size 1).
    """
    if seq_len < 2:
        raise ValueError(f"sliding_windows: need at least 2 tokens, got {seq_len}")
    if context < 2 or stride < 1:
        raise ValueError(f"sliding_windows: bad context {context} / stride {stride}")
    if stride > context:
        # The doc's loop would silently skip tokens between windows.
        raise ValueError(f"sliding_windows: stride {stride} > context {context} skips tokens")
    windows = []
    prev_end = 0
    for begin in range(0, seq_len, stride):
        end = min(begin + context, seq_len)
        trg_len = end - prev_end
        window_len = end - begin
        num_valid = min(trg_len, window_len)
        # Labels at window positions [window_len - num_valid, window_len) are valid; the shift
        # drops the label at window position 0, so the first scored global position is >= begin+1.
        score_begin = max(end - num_valid, begin + 1)
        windows.append(
            {
                "begin": begin,
                "end": end,
                "trg_len": trg_len,
                "score_begin": score_begin,
                "score_count": end - score_begin,
                "doc_weight": num_valid - 1,
            }
        )
        prev_end = end
        if end == seq_len:
            break
    return windows


def combine_window_nll(windows: list[dict], window_token_nll: list[list[float]]) -> dict:
    """Combine per-window token NLLs (nats, for the window's scored positions, in order) into the
    doc's and the exact perplexity. Returns plain floats/ints (double precision sums)."""
    if len(windows) != len(window_token_nll):
        raise ValueError("combine_window_nll: one NLL list per window expected")
    doc_sum = 0.0
    doc_n = 0
    exact_sum = 0.0
    exact_n = 0
    window_mean = []
    for w, nll in zip(windows, window_token_nll):
        if len(nll) != w["score_count"]:
            raise ValueError(f"window {w}: expected {w['score_count']} NLLs, got {len(nll)}")
        mean = sum(nll) / len(nll)
        window_mean.append(mean)
        doc_sum += mean * w["doc_weight"]
        doc_n += w["doc_weight"]
        exact_sum += sum(nll)
        exact_n += len(nll)
    return {
        "doc_nll_sum": doc_sum,
        "doc_n_tokens": doc_n,
        "doc_ppl": math.exp(doc_sum / doc_n),
        "exact_nll_sum": exact_sum,
        "exact_n_tokens": exact_n,
        "exact_ppl": math.exp(exact_sum / exact_n),
        "window_mean_nll": window_mean,
    }


# ---------------------------------------------------------------------------------------------
# safetensors header (pure Python, so outputs can be checked without the safetensors package)
# ---------------------------------------------------------------------------------------------


def read_safetensors_header(path: str | Path) -> dict:
    """Return {"__metadata__": {...}, name: {"dtype", "shape", "data_offsets"}, ...}."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        size = os.path.getsize(path)
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} larger than the file")
        return json.loads(f.read(n).decode("utf-8"))


def safetensors_summary(path: str | Path) -> dict[str, tuple[str, list[int]]]:
    header = read_safetensors_header(path)
    return {k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"}


# ---------------------------------------------------------------------------------------------
# Hugging Face helpers (import torch / transformers lazily)
# ---------------------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "safetensors", "numpy"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except ImportError:
            out[name] = "absent"
    try:
        import torch

        out["cuda"] = str(torch.version.cuda)
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return out


def build_model(model_cls, config, attn_implementation: str):
    """Instantiate model_cls(config) with the requested attention implementation.

    `config._attn_implementation` is honoured by transformers >= 4.36 and 5.x; we check that the
    model really got it, because eager vs sdpa changes rounding (and golden fixtures use eager)."""
    config._attn_implementation = attn_implementation
    model = model_cls(config)
    got = getattr(model.config, "_attn_implementation", None)
    if got != attn_implementation and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attn_implementation)  # transformers >= 4.56 / 5.x API
        got = getattr(model.config, "_attn_implementation", None)
    if got != attn_implementation:
        raise RuntimeError(
            f"{model_cls.__name__}: asked for attn_implementation={attn_implementation!r}, got {got!r}"
        )
    return model


def save_pretrained_safetensors(model, out_dir: str | Path) -> list[Path]:
    """save_pretrained into one model.safetensors (no .bin, no shards) on transformers 4.x and 5.x.

    transformers 5 removed the `safe_serialization` argument (safetensors is the only format), so
    only pass the arguments the installed version accepts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = inspect.signature(model.save_pretrained).parameters
    kwargs = {}
    if "safe_serialization" in params:
        kwargs["safe_serialization"] = True
    if "max_shard_size" in params:
        kwargs["max_shard_size"] = "4GB"  # our models are tiny: always one file
    model.save_pretrained(str(out_dir), **kwargs)
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    names = {p.name for p in files}
    if "model.safetensors" not in names:
        raise RuntimeError(f"save_pretrained wrote no model.safetensors in {out_dir}: {sorted(names)}")
    bad = [n for n in names if n.endswith(".bin") or n.endswith(".index.json")]
    if bad:
        raise RuntimeError(f"save_pretrained wrote unexpected files in {out_dir}: {bad}")
    return files


def _loading_problems(info, tied_keys: set[str]) -> dict:
    """Non-empty entries of from_pretrained's loading info, ignoring tied weights that are
    legitimately absent from the file (e.g. lm_head.weight tied to the word embeddings)."""
    if info is None:
        return {}
    if not isinstance(info, dict):
        info = dict(getattr(info, "__dict__", {}))
    problems = {}
    for key, value in info.items():
        if not value:
            continue
        values = list(value) if isinstance(value, (list, set, tuple)) else [value]
        if key == "missing_keys":
            values = [v for v in values if v not in tied_keys]
        if values:
            problems[key] = values
    return problems


def load_pretrained_fp32(model_cls, model_dir: str | Path, attn_implementation: str = "eager",
                         tied_keys: set[str] | None = None):
    """Reload a saved folder with from_pretrained as fp32 in eval mode.

    Raises if any tensor is missing (other than tied ones), unexpected or mismatched: the C++
    loader sees the same file, so a silent partial load would hide a broken export."""
    import torch

    try:
        model, info = model_cls.from_pretrained(
            str(model_dir), attn_implementation=attn_implementation, output_loading_info=True
        )
    except TypeError:  # a version without output_loading_info: load, then check keys ourselves
        model = model_cls.from_pretrained(str(model_dir), attn_implementation=attn_implementation)
        info = None
    problems = _loading_problems(info, tied_keys or set())
    if problems:
        raise RuntimeError(f"reloading {model_dir} with {model_cls.__name__}: {problems}")
    return model.to(torch.float32).eval()


def write_reference(path: str | Path, tensors: dict, metadata: dict) -> None:
    """Write tensors (torch) to a safetensors file; metadata values become strings (JSON for
    non-strings) because the safetensors __metadata__ is a str->str map."""
    from safetensors.torch import save_file

    allowed = {"float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool"}
    clean = {}
    for name, t in tensors.items():
        dtype = str(t.dtype).replace("torch.", "")
        if dtype not in allowed:
            # The C++ reader knows F32 F16 BF16 F8_E4M3 I8 U8 I32 I64 BOOL only (no F64).
            raise TypeError(f"{path}: tensor {name} has dtype {dtype}, not readable by eaq")
        clean[name] = t.detach().cpu().clone()  # clone: safetensors refuses tensors sharing memory
    meta = {k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in metadata.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(clean, str(path), metadata=meta)


# ---------------------------------------------------------------------------------------------
# Logging and packing
# ---------------------------------------------------------------------------------------------


class Tee:
    """Print to stdout and append to a log file; timestamps relative to the start."""

    def __init__(self, log_path: str | Path | None = None):
        self.start = time.time()
        self.file = None
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            self.file = open(log_path, "w", encoding="utf-8")

    def __call__(self, *parts) -> None:
        line = f"[{time.time() - self.start:7.1f}s] " + " ".join(str(p) for p in parts)
        print(line, flush=True)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pack_tree(root: str | Path, rel_paths: list[str], pack_dir: str | Path, name: str,
              part_bytes: int = 15 * 1024 * 1024, arc_prefix: str = "") -> tuple[list[Path], str]:
    """Tar+gzip root/rel_path for each rel_path (files or folders), stored in the archive as
    arc_prefix + rel_path, then split the archive into parts of at most part_bytes named
    NAME.tar.gz.part-00, -01, ...

    The device machine returns at most 8 files of at most 16 MiB each, hence the split. Returns the
    part paths and the sha256 of the whole archive. Reassemble with
    `cat NAME.tar.gz.part-* | tar xzf -` in the folder that should receive rel_paths."""
    root = Path(root)
    pack_dir = Path(pack_dir)
    pack_dir.mkdir(parents=True, exist_ok=True)
    for old in pack_dir.glob(f"{name}.tar.gz.part-*"):
        old.unlink()
    members = []
    for rel in rel_paths:
        p = root / rel
        if not p.exists():
            raise FileNotFoundError(f"pack_tree: {p} does not exist")
        if p.is_dir():
            members.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        else:
            members.append(p)
    tmp_dir = Path(tempfile.mkdtemp(prefix="pack_"))
    archive = tmp_dir / f"{name}.tar.gz"
    try:
        with tarfile.open(archive, "w:gz") as tar:
            for m in members:
                info = tar.gettarinfo(str(m), arcname=arc_prefix + m.relative_to(root).as_posix())
                # Reproducible archive: fixed owner and a sane mode.
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(m, "rb") as f:
                    tar.addfile(info, f)
        digest = sha256_file(archive)
        parts = []
        with open(archive, "rb") as f:
            index = 0
            while True:
                block = f.read(part_bytes)
                if not block:
                    break
                part = pack_dir / f"{name}.tar.gz.part-{index:02d}"
                part.write_bytes(block)
                parts.append(part)
                index += 1
    finally:
        if archive.exists():
            archive.unlink()
        tmp_dir.rmdir()
    return parts, digest


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n} B"


def require_modules(names: list[str], who: str) -> None:
    """Exit with a clear message if any of the named Python packages is missing."""
    import importlib.util

    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        die(f"{who} needs {', '.join(names)}; missing here: {', '.join(missing)} "
            "(run it on the GPU machine, where they are installed)")


def die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
