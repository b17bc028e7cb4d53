"""Single-hidden-neuron theory (Section 2): IMP vs LRR on f(x) = a * relu(w . x).

    python -m lrr_jax.main --config=configs/single_neuron.py --workdir=/tmp/theory
    python -m lrr_jax.report /tmp/theory   # draws theory.png from theory.json

Runs on a CPU in seconds (10,000 initializations per experiment, one jitted,
vmapped program) and writes <workdir>/theory.json. Details in lrr_jax/theory.py.

Expected (measured, seed 0): d = 10, balanced init: IMP 0.254, LRR 0.505
(the paper's ~1/4 vs ~1/2), mask correct 1.000; with independent Gaussian
a(0) (other_init): IMP 0.298, LRR 0.772. d = 1 success per quadrant of
(w0, a0): (+,+) 1.00, (+,-) 0.51 (exactly the inits with |a0| < w0),
(-,+) 0.00, (-,-) 0.00.
"""

from lrr_jax import config_base


def get_config():
    c = config_base.get_base_config()
    c.experiment = "single_neuron"
    c.theory_dim = 10  # input dimension d of the overparameterized experiment (d = 1 always runs)
    c.theory_num_inits = 10000  # random initializations per experiment (and per init mode)
    c.theory_num_inputs = 128  # n standard Gaussian inputs, fixed per run, full batch
    # Gradient descent approximating gradient flow: step 0.01 for 4000 steps
    # (time 40); a^2 - |w|^2 drifts O(step) (~3% at most, relative, for d = 1).
    c.theory_lr = 0.01
    c.theory_steps = 4000  # per phase: dense training, IMP retraining, LRR retraining
    # w(0) = theory_init_scale * N(0, I_d) / sqrt(d); a(0) as theory_init says.
    c.theory_init_scale = 1.0
    # 'balanced': a(0) = random sign * |w(0)| (a^2 - |w|^2 = 0, the paper's setting);
    # 'independent': a(0) = theory_init_scale * N(0, 1).
    c.theory_init = "balanced"
    c.theory_compare_inits = True  # also run the other init mode (reported as other_init)
    c.theory_threshold = 1e-3  # success: final loss < threshold * loss of the zero predictor
    c.theory_grid_size = 41  # d = 1 success map: grid_size x grid_size points ...
    c.theory_grid_range = 2.0  # ... over [-range, range]^2 in (w0, a0)
    return c
