"""ProGAN evaluation metrics with the paper's protocols: SWD, MS-SSIM and FID.

Each metric is a streaming accumulator (`update(uint8_batch)`) over a pure TensorFlow/NumPy core;
`evaluate` runs several of them over image sources in one pass and returns a JSON-ready dict.
"""

from progan_tf.metrics.evaluate import evaluate, format_results_table
from progan_tf.metrics.fid import FIDFeatures, frechet_distance, load_feature_model
from progan_tf.metrics.ms_ssim import MSSSIMAccumulator, ms_ssim_pairs
from progan_tf.metrics.sources import folder_batches, generated_batches, pyramid_batches
from progan_tf.metrics.swd import SWDDescriptors, sliced_wasserstein, swd_result

__all__ = [
    "FIDFeatures",
    "MSSSIMAccumulator",
    "SWDDescriptors",
    "evaluate",
    "folder_batches",
    "format_results_table",
    "frechet_distance",
    "generated_batches",
    "load_feature_model",
    "ms_ssim_pairs",
    "pyramid_batches",
    "sliced_wasserstein",
    "swd_result",
]
