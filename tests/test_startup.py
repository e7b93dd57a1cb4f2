"""The start-up pause of the cycle collector (sgdlab.core.startup) leaves the collector as it
found it."""

import gc

import pytest
from click.testing import CliRunner

from sgdlab.core.startup import collector_paused
from sgdlab.frontends.cli import main
from sgdlab.frontends.cli_common import CommandProcess


@pytest.fixture
def restore_gc():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_the_collector_is_off_inside_and_back_on_after(restore_gc):
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the outer block's pause holds
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_program_that_turned_it_off_keeps_it_off(restore_gc):
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_it_is_back_on_after_an_error(restore_gc):
    gc.enable()
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("inside")
    assert gc.isenabled()


def test_freeze_moves_what_lives_out_of_every_later_pass(restore_gc):
    gc.enable()
    before = gc.get_freeze_count()
    try:
        with collector_paused(freeze=True):
            kept = [[i] for i in range(1000)]  # noqa: F841  (alive at the freeze)
        assert gc.get_freeze_count() >= before + 1000
    finally:
        gc.unfreeze()


DRY_RUN = ["run", "diag-net", "--seeds", "1", "--steps", "11", "--dry-run"]  # imports the workflows API


@pytest.mark.study("diag_net")
def test_main_called_by_a_program_freezes_none_of_its_objects(restore_gc):
    gc.unfreeze()
    r = CliRunner().invoke(main, DRY_RUN)
    assert r.exit_code == 0, r.output
    assert gc.get_freeze_count() == 0


@pytest.mark.study("diag_net")
def test_the_command_process_freezes_what_its_start_up_imported(restore_gc):
    gc.unfreeze()
    try:
        r = CliRunner().invoke(main, DRY_RUN, obj=CommandProcess())  # as sgdlab.__main__.entry calls it
        assert r.exit_code == 0, r.output
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
