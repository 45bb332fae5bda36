"""The config tree: to_dict -> JSON -> from_dict round trips, old config.json files still load, and
main.py's flag defaults are the config defaults."""

import json

import pytest

from progan_tf import runs
from progan_tf.cli.train import train_config_from_flags
from progan_tf.config import LossConfig, NetworkConfig, OptimizerConfig, ScheduleConfig, TrainConfig, from_dict
from progan_tf.errors import UserInputError
from progan_tf.flags import FLAGS, define_flags

NON_DEFAULT = TrainConfig(
    data_dir="data/celeba-16",
    run_dir="runs/celeba-16",
    network=NetworkConfig(resolution=16, latent_size=16, fmap_base=64, fmap_max=16),
    schedule=ScheduleConfig(
        final_resolution=16, batch_sizes=((4, 32), (8, 16)), learning_rates=((16, 0.002),), default_batch_size=8
    ),
    loss=LossConfig(gp_weight=5.0, gp_target=750.0, drift_weight=0.01, gp_reference_scaling=False),
    optimizer=OptimizerConfig(beta_1=0.1, beta_2=0.9, epsilon=1e-6, ema_beta=0.99),
    seed=7,
)

# config.json as the code before the loss / optimizer sections wrote it for NON_DEFAULT (verbatim
# but for the whitespace).
FLAT_CONFIG_JSON = """{
  "data_dir": "data/celeba-16", "run_dir": "runs/celeba-16",
  "network": {"resolution": 16, "num_channels": 3, "latent_size": 16, "fmap_base": 64, "fmap_decay": 1.0,
              "fmap_max": 16, "fused_resample": "auto", "mbstd_group_size": 4, "normalize_latents": true},
  "schedule": {"final_resolution": 16, "stabilize_kimg": 600.0, "transition_kimg": 600.0, "total_kimg": 12000.0,
               "batch_sizes": [[4, 32], [8, 16]], "default_batch_size": 8, "learning_rates": [[16, 0.002]],
               "learning_rate": 0.001},
  "seed": 7, "mirror_augment": true, "gp_weight": 5.0, "gp_target": 750.0, "drift_weight": 0.01, "ema_beta": 0.99,
  "adam_beta_1": 0.1, "adam_beta_2": 0.9, "adam_epsilon": 1e-06, "gp_reference_scaling": false,
  "mixed_precision": false, "tick_kimg": 10.0, "sample_kimg": 50.0, "checkpoint_kimg": 100.0, "keep_checkpoints": 5,
  "resume": "latest", "grid_size": 36, "export_at_end": true, "deterministic": false, "eval_kimg": 0.0,
  "eval_num_images": 256
}"""


def test_round_trip_through_json_restores_every_node_and_tuple():
    data = json.loads(NON_DEFAULT.to_json())
    assert data["loss"] == {"gp_weight": 5.0, "gp_target": 750.0, "drift_weight": 0.01, "gp_reference_scaling": False}
    assert data["optimizer"] == {"beta_1": 0.1, "beta_2": 0.9, "epsilon": 1e-6, "ema_beta": 0.99}
    assert data["schedule"]["batch_sizes"] == [[4, 32], [8, 16]]
    restored = TrainConfig.from_dict(data)
    assert restored == NON_DEFAULT
    assert restored.schedule.batch_sizes == ((4, 32), (8, 16))  # tuples again: the config stays hashable
    assert restored.schedule.batch_size(8) == 16
    assert hash(restored) == hash(NON_DEFAULT)
    # Any node on its own, too.
    assert from_dict(NetworkConfig, json.loads(json.dumps(data["network"]))) == NON_DEFAULT.network


def test_missing_keys_take_the_defaults():
    config = TrainConfig.from_dict({"data_dir": "d", "run_dir": "r", "loss": {"gp_weight": 2.0}})
    assert config == TrainConfig(data_dir="d", run_dir="r", loss=LossConfig(gp_weight=2.0))


def test_a_run_written_by_the_previous_code_still_loads(tmp_path):
    (tmp_path / "config.json").write_text(FLAT_CONFIG_JSON)
    assert runs.load_train_config(tmp_path) == NON_DEFAULT


@pytest.mark.parametrize(
    "change, message",
    [
        ({"gp_wieght": 1.0}, r"TrainConfig has unknown keys .* Received: gp_wieght"),
        ({"network": {"resolution": 16, "width": 3}}, r"TrainConfig.network has unknown keys .* Received: width"),
        ({"network": {"resolution": 100}}, "Received: resolution=100"),
        ({"loss": {"gp_weight": 1.0}}, r"sets loss.gp_weight twice \(also as gp_weight\)"),
        ({"schedule": [1, 2]}, r"TrainConfig.schedule must be a JSON object"),
    ],
)
def test_bad_config_json_is_one_line_naming_the_key(tmp_path, change, message):
    data = json.loads(FLAT_CONFIG_JSON)
    data.update(change)
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(UserInputError, match=message) as raised:
        runs.load_train_config(tmp_path)
    assert "\n" not in str(raised.value) and str(tmp_path / "config.json") in str(raised.value)


def test_required_keys_and_json_syntax(tmp_path):
    with pytest.raises(UserInputError, match="lacks required keys. Received: missing=data_dir, run_dir"):
        TrainConfig.from_dict({})
    (tmp_path / "config.json").write_text('{"data_dir": ')
    with pytest.raises(UserInputError, match="is not a valid run config"):
        runs.load_train_config(tmp_path)


def test_flag_defaults_are_the_config_defaults():
    define_flags()
    FLAGS.unparse_flags()
    try:
        FLAGS(["main.py", "--data_dir=data/x", "--run_dir=runs/x"])
        from_flags = train_config_from_flags(FLAGS)
    finally:
        FLAGS.unparse_flags()
    assert from_flags == TrainConfig(data_dir="data/x", run_dir="runs/x")
