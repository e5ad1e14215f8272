#!/usr/bin/env python3
"""score.py - perplexity of a text file through libkvtile (ctypes), as
`kvtile ppl MODEL -f TEXT -c N_CTX --chunks WINDOWS --json` (same nll_sum).

    python3 score.py MODEL.gguf TEXT.txt [N_CTX [WINDOWS]]

The library is found as libkvtile.so.0 on the loader's path, or at
$KVTILE_LIB. The structs below mirror kvtile.h (version 0.x).
"""
import ctypes as C
import json
import os
import sys

lib = C.CDLL(os.environ.get("KVTILE_LIB", "libkvtile.so.0"))


class ModelInfo(C.Structure):
    _fields_ = [("arch", C.c_char * 32), ("n_vocab", C.c_int), ("n_ctx_train", C.c_int64),
                ("n_layer", C.c_int), ("n_embd", C.c_int), ("n_head", C.c_int),
                ("n_head_kv", C.c_int), ("head_dim", C.c_int), ("bos", C.c_int),
                ("eos", C.c_int), ("add_bos", C.c_int), ("rope_scheme", C.c_char * 16)]


class CtxParams(C.Structure):
    _fields_ = [("n_threads", C.c_int), ("n_batch", C.c_int), ("n_ctx", C.c_int64),
                ("tile_tokens", C.c_int), ("rope_scaling", C.c_char_p),
                ("rope_scale", C.c_double), ("rope_freq_base", C.c_double),
                ("yarn_beta_fast", C.c_double), ("yarn_beta_slow", C.c_double),
                ("longrope_factors", C.POINTER(C.c_float)), ("n_longrope_factors", C.c_int),
                ("self_extend_group", C.c_int), ("self_extend_window", C.c_int),
                ("rotate_k_on_write", C.c_int), ("grow_positions", C.c_int),
                ("longrope_exact", C.c_int), ("attend", C.c_char_p), ("kernels", C.c_char_p)]


class ScoreParams(C.Structure):
    _fields_ = [("n_ctx", C.c_int64), ("max_windows", C.c_int64), ("stride", C.c_int64),
                ("score_all", C.c_int), ("score_from", C.c_int64), ("decode", C.c_int),
                ("resume_dir", C.c_char_p), ("resume", C.c_int),
                ("progress", C.c_void_p), ("user", C.c_void_p)]


class ScoreResult(C.Structure):
    _fields_ = [("nll_sum", C.c_double), ("nll2_sum", C.c_double), ("n_scored", C.c_int64),
                ("ppl", C.c_double), ("ppl_stderr", C.c_double), ("n_ctx", C.c_int64),
                ("n_windows", C.c_int64), ("n_eval", C.c_int64), ("resumed_from", C.c_int)]


P = C.c_void_p
lib.kvtile_strerror.restype = C.c_char_p
lib.kvtile_strerror.argtypes = [C.c_int]
lib.kvtile_model_open.argtypes = [C.c_char_p, P, C.POINTER(P), C.c_char_p, C.c_size_t]
lib.kvtile_model_info.argtypes = [P, C.POINTER(ModelInfo)]
lib.kvtile_model_close.argtypes = [P]
lib.kvtile_tokenize_bound.restype = C.c_size_t
lib.kvtile_tokenize_bound.argtypes = [C.c_size_t]
lib.kvtile_tokenize.restype = C.c_int64
lib.kvtile_tokenize.argtypes = [P, C.c_char_p, C.c_size_t, C.c_uint,
                                C.POINTER(C.c_int32), C.c_size_t, P]
lib.kvtile_ctx_params_default.argtypes = [C.POINTER(CtxParams)]
lib.kvtile_ctx_create.argtypes = [P, C.POINTER(CtxParams), C.POINTER(P)]
lib.kvtile_ctx_free.argtypes = [P]
lib.kvtile_score_params_default.argtypes = [C.POINTER(ScoreParams)]
lib.kvtile_score.argtypes = [P, P, C.POINTER(C.c_int32), C.c_int64,
                             C.POINTER(ScoreParams), C.POINTER(ScoreResult)]
KVTILE_TOK_ADD_SPECIAL = 1


def check(rc, what):
    if rc < 0:
        sys.exit("%s: %s" % (what, lib.kvtile_strerror(rc).decode()))
    return rc


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: score.py MODEL.gguf TEXT.txt [N_CTX [WINDOWS]]")
    model_path, text_path = sys.argv[1], sys.argv[2]
    n_ctx = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    windows = int(sys.argv[4]) if len(sys.argv) > 4 else -1

    m, err = P(), C.create_string_buffer(512)
    if lib.kvtile_model_open(model_path.encode(), None, C.byref(m), err, 512) < 0:
        sys.exit("%s: %s" % (model_path, err.value.decode()))
    info = ModelInfo()
    lib.kvtile_model_info(m, C.byref(info))

    text = open(text_path, "rb").read()
    cap = lib.kvtile_tokenize_bound(len(text))
    ids = (C.c_int32 * cap)()
    n = check(lib.kvtile_tokenize(m, text, len(text),
                                  KVTILE_TOK_ADD_SPECIAL if info.add_bos else 0, ids, cap, None),
              text_path)

    cp = CtxParams()
    lib.kvtile_ctx_params_default(C.byref(cp))
    cp.n_ctx = n_ctx
    ctx = P()
    check(lib.kvtile_ctx_create(m, C.byref(cp), C.byref(ctx)), "context")
    sp, r = ScoreParams(), ScoreResult()
    lib.kvtile_score_params_default(C.byref(sp))
    sp.max_windows = windows
    check(lib.kvtile_score(ctx, None, ids, n, C.byref(sp), C.byref(r)), text_path)
    # repr() of a float is the shortest string that reads back the same double
    print(json.dumps({"ppl": round(r.ppl, 6), "nll_sum": r.nll_sum, "n_scored": r.n_scored,
                      "n_ctx": r.n_ctx, "n_chunks": r.n_windows, "n_tokens": n}))
    lib.kvtile_ctx_free(ctx)
    lib.kvtile_model_close(m)


main()
