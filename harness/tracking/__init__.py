"""MLflow: the store that writes runs (`store.Store`), the reader that answers the reading
commands from the local SQLite file without importing MLflow (`reader.StoreReader`), the
interface both keep (`protocol.RunStore`), tracking URIs, tag names and UI links, and the
data a run used as MLflow dataset inputs.

May import data, entries and the shared top-level modules; never Keras or TensorFlow.
"""
