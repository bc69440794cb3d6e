import subprocess
import sys


def test_student_contract_does_not_import_torch() -> None:
    code = (
        "import sys, mindmirror.student.tasks, mindmirror.student.distillation;"
        "import mindmirror.student.bundle, mindmirror.student.formats;"
        "import mindmirror.cli; mindmirror.cli.build_parser();"
        "heavy = [m for m in ('torch', 'transformers', 'onnxruntime', 'fastapi')"
        " if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
