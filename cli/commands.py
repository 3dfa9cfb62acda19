"""Every subcommand module registers itself on the app here, in the order `rdet --help` lists them."""
from importlib import import_module

MODULES = ["demo_cmd", "zoo_cmds", "weights_cmds", "predict_cmd", "eval_cmd", "train_cmd", "bench_cmd",
           "export_cmd", "doctor_cmd"]


def register(app) -> None:
    for name in MODULES:
        import_module(f"{__package__}.{name}").register(app)
