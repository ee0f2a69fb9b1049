"""Model throughput per KV-cache format, as stored by `quantbench throughput` for the commit under
test. Tokens/s is higher-is-better and asv flags only increases, so it is tracked as its
reciprocal, milliseconds per token: a slowdown is an increase, as asv expects. Each benchmark has an
explicit `benchmark_name`, the name asv stores its results under, so renaming the code keeps them."""
from ._records import format_params, latest_value


class TrackThroughput:
    params = [format_params()]
    param_names = ["format"]

    def track_decode_ms_per_token(self, spec):
        return 1e3 / latest_value("decode", "decode_tok_s", spec)

    track_decode_ms_per_token.benchmark_name = "throughput.TrackThroughput.track_decode_ms_per_token"
    track_decode_ms_per_token.unit = "ms/token"

    def track_prefill_ms_per_token(self, spec):
        return 1e3 / latest_value("prefill", "prefill_tok_s", spec)

    track_prefill_ms_per_token.benchmark_name = "throughput.TrackThroughput.track_prefill_ms_per_token"
    track_prefill_ms_per_token.unit = "ms/token"
