"""What the functional layer asks the GRU's dispatcher before it runs a call: the measured
table's entry for the call, and the plan (strategy, tiles) and reason the layer kernels would
take. Nothing here launches a kernel."""

from ..launchers.gru_layer import gru_layer_forward_plan
from ..launchers.plan import KERNEL_STRATEGIES, STRATEGIES, table_choice
from ..launchers.plan_table import describe as describe_entry

__all__ = ["KERNEL_STRATEGIES", "STRATEGIES", "table_choice", "gru_layer_forward_plan", "describe_entry"]
