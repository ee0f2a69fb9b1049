"""Model quality per KV-cache format: mean and p99 KL divergence against the unquantized model, as
stored by `quantbench quality` for the commit under test (both lower is better). Each benchmark has an
explicit `benchmark_name`, the name asv stores its results under, so renaming the code keeps them."""
from ._records import format_params, latest_value


class TrackQuality:
    params = [format_params()]
    param_names = ["format"]

    def track_kld_mean(self, spec):
        return latest_value("quality", "kld_mean", spec)

    track_kld_mean.benchmark_name = "quality.TrackQuality.track_kld_mean"
    track_kld_mean.unit = "nats"

    def track_kld_p99(self, spec):
        return latest_value("quality", "kld_p99", spec)

    track_kld_p99.benchmark_name = "quality.TrackQuality.track_kld_p99"
    track_kld_p99.unit = "nats"
