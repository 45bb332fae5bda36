"""One latent draw: the same --generate_seed feeds the same latents to generate and to evaluate."""

import numpy as np

from progan_tf.generate import generate_outputs
from progan_tf.generators import Generator
from progan_tf.latents import seeded_latents
from progan_tf.metrics.sources import generated_batches

LATENT_SIZE = 8


def recording_generator(received):
    def fn(latents):
        received.append(np.array(latents))
        return np.zeros((len(latents), 4, 4, 3), np.uint8)

    return Generator(fn, LATENT_SIZE, 4, "recorder")


def test_generate_and_evaluate_see_the_same_latents_for_one_seed(tmp_path):
    by_generate, by_evaluate, by_evaluate_other_batches = [], [], []
    generate_outputs(recording_generator(by_generate), tmp_path, num_images=7, seed=3)
    list(generated_batches(recording_generator(by_evaluate), (LATENT_SIZE,), 7, batch_size=3, seed=3))
    list(generated_batches(recording_generator(by_evaluate_other_batches), (LATENT_SIZE,), 7, batch_size=64, seed=3))
    generated = np.concatenate(by_generate)
    assert generated.shape == (7, LATENT_SIZE)
    np.testing.assert_array_equal(np.concatenate(by_evaluate), generated)
    np.testing.assert_array_equal(np.concatenate(by_evaluate_other_batches), generated)
    np.testing.assert_array_equal(seeded_latents(3, 7, LATENT_SIZE).numpy(), generated)


def test_draws_are_prefixes_standard_normal_and_seed_dependent():
    many = seeded_latents(5, 4000, LATENT_SIZE).numpy()
    for count in (1, 3, 999):  # a shorter draw is the start of a longer one (odd sizes included)
        np.testing.assert_array_equal(seeded_latents(5, count, LATENT_SIZE).numpy(), many[:count])
    assert abs(many.mean()) < 0.03 and abs(many.std() - 1.0) < 0.03
    assert not np.allclose(seeded_latents(6, 3, LATENT_SIZE).numpy(), many[:3])
