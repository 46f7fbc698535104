"""The library behind ``ccdf solve``: input files -> measurements -> CCDF -> output files.

``solve(SolveConfig(...))`` runs over a file or a whole folder, streaming:

1. **Check what is cheap, up front.**  Flags, the model, the restoration network, the
   operator (a mask of the right size, a factor that divides the size), the input listing
   and output-name collisions; a single input file is also read and checked.  A problem
   there is one ValueError/OSError line (exit 2 in the CLI) and nothing is written.
2. **Open --out** (``manifest``): create it, take its lock (``.ccdf.lock``, a second run is
   refused), compare the settings with those recorded there (others are refused unless
   ``overwrite``), and find the inputs already done.
3. **Item by item.**  The sorted inputs not yet done are read, solved and written one by one
   (``batch_size`` consecutive items at a time; ``batch``).  Each item (an image, or one
   slice of a volume) has its own ``torch.Generator`` seeded from the global seed and the
   item's NAME (``item_seed``), never from its position.  Each input's outputs are written
   atomically (``writers``) and then its manifest line; an input that cannot be read or
   solved (corrupt file, NaN in the sampler) gets a "failed" line with the reason and the
   run goes on.  Outputs that cannot be written (disk full) stop the run with one line;
   what was finished stays.  Killing the run at any moment and rerunning the same command
   gives the outputs of an uninterrupted run.
4. **Merge.**  The manifest is rewritten in input order and metrics.json rebuilt from it.

Under ``torchrun`` (``dist``) rank r takes the inputs i with i % world == r and writes its
own manifest part; rank 0 does steps 2 and 4.  Modules: ``config`` (settings, models),
``readers`` (inputs), ``batch`` (batched solving), ``writers`` (outputs), ``manifest``
(lock, manifest, metrics), ``dist`` (ranks), ``run`` (the run).
"""

from .config import SolveConfig, check_config, item_seed, parse_slices, resolve_init, resolve_model
from .readers import SUFFIXES, kspace_to_ours, list_inputs
from .run import OutputError, SolveResult, solve

__all__ = ["SolveConfig", "SolveResult", "OutputError", "solve", "check_config", "item_seed",
           "parse_slices", "resolve_model", "resolve_init", "list_inputs", "kspace_to_ours",
           "SUFFIXES"]
