"""Small test data and runs shared by several test modules."""

from pathlib import Path

from playground import data, store


def small_dataset(n=12) -> data.Dataset:
    records = [data.Record(f"Repeat the word {w}.", "", f"{w} {w}") for w in
               ["apple", "river", "stone", "cloud", "green", "piano", "tiger", "lemon", "ocean", "maple", "candle", "rocket"][:n]]
    return data.Dataset(records=records, source="test", mapping={})


def train_tiny_run(model_dir: Path, models: Path, run_id: str, dataset: data.Dataset, max_steps: int,
                   **settings) -> Path:
    """A finished LoRA run on the tiny model, saved under `models`; returns its folder."""
    from playground.training import TrainConfig, prepare_model, run_training
    from playground.weights import Weights

    config = TrainConfig(model=str(model_dir), max_steps=max_steps, batch_size=4, lr=1e-2, probes=0, eval_every=0,
                         probe_every=0, lora_r=8, lora_alpha=16, lora_dropout=0.0, **settings)
    side = prepare_model(Weights(store.load_model(str(model_dir))), config, run_id, models, None, "cpu")
    state, message, _ = run_training(side, store.load_tokenizer(str(model_dir)), dataset, config, models, run_id)
    assert state == "finished", message
    return models / "runs" / run_id
