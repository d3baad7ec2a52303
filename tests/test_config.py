"""Config loading: YAML + dotted overrides, unknown keys fail with valid names, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchrl.config import Config, ConfigError, dump_config, load_config, save_config


def test_defaults_load() -> None:
    cfg = load_config()
    assert cfg.retrieval.kind == "bm25"
    assert cfg.serve.host == "127.0.0.1"
    assert cfg.model.path == "smollm2-135m-instruct"


def test_yaml_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("retrieval:\n  topk: 7\n  kind: dense\nseed: 3\n")
    cfg = load_config(f, ["retrieval.topk=5", "serve.port=9001", "model.path=foo/bar"])
    assert (cfg.retrieval.topk, cfg.retrieval.kind, cfg.seed) == (5, "dense", 3)
    assert cfg.serve.port == 9001 and cfg.model.path == "foo/bar"


def test_unknown_key_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["retrieval.topK=5"])
    msg = str(err.value)
    assert "retrieval.topK" in msg and "topk" in msg and "Did you mean 'topk'" in msg


def test_unknown_section(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("retreival:\n  topk: 3\n")
    with pytest.raises(ConfigError, match="Did you mean 'retrieval'"):
        load_config(f)


def test_bad_literal_lists_choices() -> None:
    with pytest.raises(ConfigError, match="bm25"):
        load_config(None, ["retrieval.kind=elastic"])


def test_bad_value_type_and_range() -> None:
    with pytest.raises(ConfigError, match=r"retrieval\.topk"):
        load_config(None, ["retrieval.topk=zero"])
    with pytest.raises(ConfigError, match=r"retrieval\.topk"):
        load_config(None, ["retrieval.topk=0"])


@pytest.mark.parametrize("bad", ["retrieval.topk", "=3", "retrieval..topk=3", "seed.x=1"])
def test_malformed_overrides(bad: str) -> None:
    with pytest.raises(ConfigError):
        load_config(None, [bad])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(tmp_path / "broken.yaml")


def test_save_and_reload_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["retrieval.topk=4", "data.skip_bad=true"])
    path = save_config(cfg, tmp_path / "run")
    again = load_config(path)
    assert again == cfg
    assert dump_config(again) == dump_config(cfg)
    assert isinstance(again, Config)


def test_every_field_documented() -> None:
    def walk(model: type) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                missing += [f"{name}.{m}" for m in walk(sub)]
            elif not field.description:
                missing.append(name)
        return missing

    assert walk(Config) == []


def test_reward_schedule_loads_and_rejects_bad_orders() -> None:
    cfg = load_config(
        None, ["train.reward_schedule=[{reward: r1_searcher_stage1, until_step: 50}, {reward: r1_searcher_stage2}]"]
    )
    assert [(s.reward, s.until_step) for s in cfg.train.reward_schedule] == [
        ("r1_searcher_stage1", 50),
        ("r1_searcher_stage2", None),
    ]
    with pytest.raises(ConfigError, match="the last must have none"):
        load_config(None, ["train.reward_schedule=[{reward: em, until_step: 5}]"])
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_config(
            None, ["train.reward_schedule=[{reward: em, until_step: 5}, {reward: f1, until_step: 5}, {reward: em}]"]
        )
    with pytest.raises(ConfigError, match="until_stpe"):
        load_config(None, ["train.reward_schedule=[{reward: em, until_stpe: 5}, {reward: f1}]"])
    with pytest.raises(ConfigError, match=r"reward_schedule\.0\.reward: Input should be .em."):
        load_config(None, ["train.reward_schedule=[{reward: bleu}]"])


def test_registry_names_are_the_literal_choices() -> None:
    with pytest.raises(ConfigError, match="reinforce_pp_baseline"):
        load_config(None, ["train.algorithm=gae"])
    with pytest.raises(ConfigError, match="seq-mean-token-sum-norm"):
        load_config(None, ["train.loss_agg=sum"])
    with pytest.raises(ConfigError, match="ppo_clip"):
        load_config(None, ["train.policy_loss=clip"])


def test_cross_field_checks_fail_at_load_time() -> None:
    with pytest.raises(ConfigError, match=r"train\.algorithm=rloo has no KL-in-reward term"):
        load_config(None, ["train.algorithm=rloo", "train.kl_in_reward=true", "train.kl_coef=0.01"])
    assert load_config(None, ["train.algorithm=grpo", "train.kl_in_reward=true", "train.kl_coef=0"]).train.kl_in_reward
    assert load_config(None, ["train.algorithm=reinforce_pp", "train.kl_in_reward=true"]).train.kl_coef > 0
    with pytest.raises(ConfigError, match="dual clip of ppo_clip"):
        load_config(None, ["train.policy_loss=pg", "train.clip_ratio_c=3"])
    with pytest.raises(ConfigError, match=r"train\.clip_ratio_c"):
        load_config(None, ["train.clip_ratio_c=1.0"])  # a dual clip needs c > 1
    defaults = load_config().train
    assert (defaults.policy_loss, defaults.clip_ratio_c) == ("ppo_clip", None)  # today's loss
