"""packyd's configuration: schema, sources and validation (see ``load.load_config``)."""

from .load import LoadResult, Origin, Problem, default_config_path, load_config, mask_secret
from .schema import Config, PackycodeConfig, ProviderConfig

__all__ = [
    "Config",
    "LoadResult",
    "Origin",
    "PackycodeConfig",
    "Problem",
    "ProviderConfig",
    "default_config_path",
    "load_config",
    "mask_secret",
]
