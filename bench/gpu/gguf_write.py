"""GGUF writing for the synthetic models of the GPU benchmarks: metadata,
a byte-fallback SPM vocabulary padded to any size, and tensors streamed one at
a time (F16 matrices, F32 vectors), so that a model larger than memory can be
written."""
import struct

import numpy as np

U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9


def _str(x):
    x = x.encode()
    return struct.pack("<Q", len(x)) + x


def _value(t, v):
    if t == STR:
        return _str(v)
    return struct.pack({U32: "<I", I32: "<i", F32: "<f", BOOL: "<?"}[t], v)


def spm_vocab(n_vocab):
    """Metadata of a byte-fallback SPM vocabulary of n_vocab pieces: <unk>, <s>,
    </s>, the 256 bytes, then pieces that never match text."""
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [f"\u2581w{i}" for i in range(n_vocab - len(pieces))]
    types = [2, 3, 3] + [6] * 256 + [1] * (n_vocab - 259)
    return [("tokenizer.ggml.model", STR, "llama"),
            ("tokenizer.ggml.tokens", ARR, (STR, pieces)),
            ("tokenizer.ggml.scores", ARR, (F32, np.zeros(n_vocab, "<f4"))),
            ("tokenizer.ggml.token_type", ARR, (I32, np.array(types, "<i4"))),
            ("tokenizer.ggml.bos_token_id", U32, 1),
            ("tokenizer.ggml.eos_token_id", U32, 2),
            ("tokenizer.ggml.add_bos_token", BOOL, True)]


def _kv(key, t, v):
    out = _str(key) + struct.pack("<I", t)
    if t != ARR:
        return out + _value(t, v)
    item_type, items = v
    out += struct.pack("<IQ", item_type, len(items))
    if item_type == STR:
        return out + b"".join(_str(x) for x in items)
    return out + np.asarray(items).tobytes()


def write(path, metadata, tensors):
    """metadata: (key, type, value) triples; tensors: (name, shape, make, f32)
    with shape in PyTorch order (rows first), make() returning the values as an
    array of that shape (called once, in order, when the tensor is written) and
    f32 true for tensors stored as F32 (vectors always are), F16 otherwise."""
    infos, offset = [], 0
    for name, shape, _, f32 in tensors:
        f16 = len(shape) >= 2 and not f32
        dims = list(reversed(shape))
        infos.append(_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) +
                     struct.pack("<IQ", 1 if f16 else 0, offset))
        offset += (int(np.prod(shape)) * (2 if f16 else 4) + 31) // 32 * 32
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
        f.write(b"".join(_kv(*m) for m in metadata) + b"".join(infos))
        f.write(b"\0" * (-f.tell() % 32))
        for name, shape, make, f32 in tensors:
            x = np.ascontiguousarray(make(), dtype=np.float16 if len(shape) >= 2 and not f32 else np.float32)
            if list(x.shape) != list(shape):
                raise ValueError(f"{name}: made {x.shape}, declared {shape}")
            f.write(x.tobytes())
            f.write(b"\0" * (-f.tell() % 32))
