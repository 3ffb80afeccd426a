"""What the runs show: the evidence behind each entry, seed statistics, the comparison
table, tables as text, plots, the report, and the pick of the final model.

Reads the store only (through tracking's RunStore); may import tracking, entries and the
shared top-level modules, never Keras or TensorFlow, so `compare` and `report` answer
without them.
"""
