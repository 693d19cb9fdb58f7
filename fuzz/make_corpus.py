#!/usr/bin/python3
"""Writes the seed corpus of npy_fuzz, fuzz/corpus/npy/: tiny valid .npy files (every
supported dtype and byte order, format versions 1-3, 0-d and empty arrays) and invalid ones
(truncated, trailing bytes, bad magic / version / header length, Fortran order, an integer
dtype, a shape written (n), an overflowing shape, a duplicate key, a 4-byte file).

Dev-only tool (the corpus is committed); needs NumPy (Debian: apt-get install -y python3-numpy).
    /usr/bin/python3 fuzz/make_corpus.py
"""
import io
import os

import numpy as np
from numpy.lib import format as npy_format

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "npy")


def npy_bytes(arr, version=None):
    b = io.BytesIO()
    if version is None:
        np.save(b, arr, allow_pickle=False)
    else:
        npy_format.write_array(b, arr, version=version, allow_pickle=False)
    return b.getvalue()


def raw_v1(header):
    """A v1 file with this exact header text (padded to 64 bytes, '\\n'-terminated)."""
    h = header.encode("latin1")
    pad = (-(10 + len(h) + 1)) % 64
    return b"\x93NUMPY\x01\x00" + (len(h) + pad + 1).to_bytes(2, "little") + h + b" " * pad + b"\n"


def main():
    os.makedirs(OUT, exist_ok=True)
    good = npy_bytes(np.arange(4, dtype="<f4"))
    files = {
        "valid_f4_2x3": npy_bytes(np.arange(6, dtype="<f4").reshape(2, 3)),
        "valid_f2_4": npy_bytes(np.array([1, -2.5, 65504, 6e-8], dtype="<f2")),
        "valid_f8_scalar": npy_bytes(np.array(3.25, dtype="<f8")),
        "valid_be_f4_3": npy_bytes(np.array([1, 2, 3], dtype=">f4")),
        "valid_empty_0x5": npy_bytes(np.zeros((0, 5), dtype="<f4")),
        "valid_v2_f4_2": npy_bytes(np.array([1, 2], dtype="<f4"), version=(2, 0)),
        "valid_v3_f8_1x1": npy_bytes(np.array([[7]], dtype="<f8"), version=(3, 0)),
        "bad_truncated": good[:-3],
        "bad_trailing": good + b"\0\0\0\0",
        "bad_magic": b"\x93NUMPZ" + good[6:],
        "bad_version": good[:6] + b"\x04\x00" + good[8:],
        "bad_header_len": good[:8] + b"\xff\xff" + good[10:],
        "bad_fortran": npy_bytes(np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3))),
        "bad_int_descr": npy_bytes(np.arange(3, dtype="<i4")),
        "bad_shape_paren": raw_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (1), }")
        + b"\0" * 4,
        "bad_shape_huge": raw_v1(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"),
        "bad_duplicate": raw_v1(
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (), }") + b"\0" * 4,
        "bad_short": b"\x93NUM",
    }
    for name, data in files.items():
        with open(os.path.join(OUT, name + ".npy"), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files to {OUT}")


if __name__ == "__main__":
    main()
