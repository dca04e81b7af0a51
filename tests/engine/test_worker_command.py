"""`orsay worker`: its flags take only what the engine can do, and whatever stops it from
starting is said on stderr with a non-zero exit, before it takes a job."""

from __future__ import annotations

import pytest

from orsay import cli


def worker(*argv: str) -> int:
    return cli.main(["worker", "--queue", "redis://127.0.0.1:1/0", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "vgg11"], "argument --model: invalid choice: 'vgg11'"),
        (["--device", "gpu"], "expected auto, cpu, cuda, cuda:N or mps, not 'gpu'"),
        (["--device", "cuda:x"], "not 'cuda:x'"),
    ],
)
def test_flags_take_choices(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        worker(*argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_device_that_is_not_there_stops_it_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert worker("--device", "cuda:63", "--weights", "random") == 1
    out, err = capsys.readouterr()
    assert "orsay worker: cannot start the painter: there is no cuda:63 here" in err
    assert out == ""


def test_bad_arguments_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker("--stub-painter", "--batch", "0") == 2
    out, err = capsys.readouterr()
    assert "orsay worker: --batch must be at least 1, not 0." in err and out == ""
    assert cli.main(["worker", "--queue", "sqlite:///x.db", "--stub-painter"]) == 2
    assert "needs a Redis queue" in capsys.readouterr().err
