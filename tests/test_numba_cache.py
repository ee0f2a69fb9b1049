"""numba's disk cache serves the attention kernels in a second process. A kernel whose closure holds a
compiled function gets a new cache key in every process and compiles again each run (a minute of
`quantbench run` on 2 cores) without any error; this is the check that would see it."""
import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import json

    from quantbench.kernels.attention import numba as attention
    from quantbench.kernels.attention.layout import KIND_Q8_0, KIND_TURBO
    from quantbench.kernels.registry import Case, find_variant

    for spec in ("q8_0", "turbo2"):
        case = Case.make("attn_decode", spec, batch=1, heads=2, kv_heads=1, n=1, ctx=32, dim=64)
        for name in ("native", "sparse_v"):
            find_variant("attn_decode", spec, "numba", name).factory(case)()
    kernels = [attention.flash_partials(KIND_Q8_0, 0), attention.flash_partials(KIND_TURBO, 2),
               *attention.sparse_passes(KIND_Q8_0, 0), attention.merge_partials]  # what the drivers call
    print(json.dumps([[k.py_func.__qualname__, sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values())]
                      for k in kernels]))
""")


def test_attention_kernels_load_from_the_disk_cache_in_a_new_process(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "1"}
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "NumbaIRAssumptionWarning" not in done.stderr, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert all(misses > 0 for _, _, misses in first), first  # compiled, into an empty cache
    assert all(hits > 0 and misses == 0 for _, hits, misses in second), second


def test_cached_kernels_are_dropped_when_a_source_of_the_package_changes(tmp_path):
    from quantbench.kernels.numba_cache import _cache_dir, drop_stale_caches

    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "kernel.py").write_text("X = 1\n")

    def fake_caches():
        folder = _cache_dir(root / "sub" / "kernel.py")
        made = [folder / "kernel.f-1.py311.nbi", folder / "kernel.f-1.py311.1.nbc"]
        for path in made:
            path.write_bytes(b"stale")
        return made

    first = fake_caches()
    assert drop_stale_caches(root) and not any(p.exists() for p in first)  # never stamped: dropped
    kept = fake_caches()
    assert not drop_stale_caches(root) and all(p.exists() for p in kept)  # same sources: kept
    (root / "sub" / "kernel.py").write_text("X = 2\n")
    assert drop_stale_caches(root) and not any(p.exists() for p in kept)  # an edit anywhere: dropped
