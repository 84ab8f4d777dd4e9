"""Small test data shared by several test modules."""

from playground import data


def small_dataset(n=12) -> data.Dataset:
    records = [data.Record(f"Repeat the word {w}.", "", f"{w} {w}") for w in
               ["apple", "river", "stone", "cloud", "green", "piano", "tiger", "lemon", "ocean", "maple", "candle", "rocket"][:n]]
    return data.Dataset(records=records, source="test", mapping={})
