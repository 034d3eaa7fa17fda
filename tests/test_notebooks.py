"""Execute every sample notebook end to end in small mode (MRCNN_NOTEBOOK_SMALL=1).

Each notebook runs in a fresh "python3" kernel with samples/ as working folder, as a user
would open it; any cell that raises fails the test with the cell's traceback.
"""
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

SAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples")
NOTEBOOKS = ["demo.ipynb", "inspect_data.ipynb", "inspect_model.ipynb", "inspect_weights.ipynb",
             "train_shapes.ipynb"]
CELL_TIMEOUT_S = 600


def _kernel_available(name="python3"):
    """True when a Jupyter kernel ``name`` can be started (ipykernel installed)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return False
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return False
    return True


def test_small_mode_reads_the_environment_switch():
    from samples.notebook_utils import small_mode

    assert small_mode({"MRCNN_NOTEBOOK_SMALL": "1"}) is True
    assert small_mode({"MRCNN_NOTEBOOK_SMALL": "yes"}) is True
    for off in ({}, {"MRCNN_NOTEBOOK_SMALL": ""}, {"MRCNN_NOTEBOOK_SMALL": "0"},
                {"MRCNN_NOTEBOOK_SMALL": "false"}):
        assert small_mode(off) is False, off


def test_every_notebook_in_samples_is_listed():
    found = sorted(f for f in os.listdir(SAMPLES_DIR) if f.endswith(".ipynb"))
    assert found == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_saved_without_outputs(name):
    nb = nbformat.read(os.path.join(SAMPLES_DIR, name), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, name
    assert all(not cell.outputs and cell.execution_count is None for cell in code), name
    assert "MRCNN_NOTEBOOK_SMALL" in "".join(c.source for c in code) or \
        "small_mode()" in code[0].source


@pytest.mark.skipif(not _kernel_available(), reason="no 'python3' Jupyter kernel: pip install ipykernel")
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_small_mode(name, monkeypatch, tmp_path):
    monkeypatch.setenv("MRCNN_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    # Keep the user's ../logs untouched even if a notebook were to write there.
    monkeypatch.setenv("MRCNN_COCO_WEIGHTS", str(tmp_path / "absent_mask_rcnn_coco.h5"))
    nb = nbformat.read(os.path.join(SAMPLES_DIR, name), as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": SAMPLES_DIR}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{name} failed:\n{err}")
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors, errors
