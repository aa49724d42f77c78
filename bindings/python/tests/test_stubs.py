"""The type stubs describe the package, and every public name has a docstring."""
import ast
import inspect
from pathlib import Path

import pytest

import lmtp

PACKAGE_DIR = Path(lmtp.__file__).parent
SOURCE_DIR = Path(__file__).resolve().parent.parent / "lmtp"
STUB_DIRS = [PACKAGE_DIR] + ([SOURCE_DIR] if SOURCE_DIR.is_dir() and SOURCE_DIR != PACKAGE_DIR else [])


def stub_tree(directory):
    path = directory / "__init__.pyi"
    assert path.is_file(), "no stubs at %s" % path
    return ast.parse(path.read_text(), filename=str(path))


def top_level_names(tree):
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                if a.asname:
                    names.add(a.asname)
    return names


def stub_class(tree, name):
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise AssertionError("class %s is not in the stubs" % name)


def class_members(cls_node):
    """{name: FunctionDef or None (an annotated attribute)}"""
    out = {}
    for node in cls_node.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = None
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = None
    return out


def public_methods(cls):
    return sorted(n for n, v in inspect.getmembers(cls) if not n.startswith("_") and
                  (inspect.isfunction(v) or inspect.ismethod(v) or isinstance(inspect.getattr_static(cls, n),
                                                                                (property, classmethod))))


@pytest.fixture(params=STUB_DIRS, ids=[str(d) for d in STUB_DIRS])
def stub_dir(request):
    return request.param


def test_py_typed_next_to_the_stubs(stub_dir):
    assert (stub_dir / "__init__.pyi").is_file()
    assert (stub_dir / "py.typed").is_file()


def test_stubs_define_every_public_name(stub_dir):
    names = top_level_names(stub_tree(stub_dir))
    missing = [n for n in lmtp.__all__ if n not in names]
    assert not missing, "lmtp.__all__ names missing from the stubs: %s" % missing
    assert "__version__" in names


# The connection classes whose stubs are checked member by member, and their context-manager methods.
CLASSES = {"LMTP": ("__enter__", "__exit__"), "AsyncLMTP": ("__aenter__", "__aexit__"),
           "AsyncPool": ("__aenter__", "__aexit__")}
# What each needs to be made without connecting anywhere.
MAKE = {"AsyncPool": ("127.0.0.1",)}


@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_stubs_define_every_public_method(stub_dir, cls):
    members = class_members(stub_class(stub_tree(stub_dir), cls))
    missing = [n for n in public_methods(getattr(lmtp, cls)) if n not in members]
    assert not missing, "%s methods missing from the stubs: %s" % (cls, missing)
    for name in ("__init__",) + CLASSES[cls]:
        assert name in members


@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_stub_signatures_match(stub_dir, cls):
    real_cls = getattr(lmtp, cls)
    members = class_members(stub_class(stub_tree(stub_dir), cls))
    for name in public_methods(real_cls) + ["__init__"]:
        node = members.get(name)
        if node is None or isinstance(inspect.getattr_static(real_cls, name), property):
            continue
        stub_params = [a.arg for a in node.args.args + node.args.kwonlyargs]
        real = list(inspect.signature(getattr(real_cls, name)).parameters)
        assert stub_params == real, name
        # a parameter with a default has one in the stubs too
        stub_defaults = len(node.args.defaults)
        real_defaults = sum(1 for p in inspect.signature(getattr(real_cls, name)).parameters.values()
                            if p.default is not inspect.Parameter.empty and p.kind != p.KEYWORD_ONLY)
        assert stub_defaults == real_defaults, name
        # a coroutine is one in the stubs too
        assert isinstance(node, ast.AsyncFunctionDef) == inspect.iscoroutinefunction(getattr(real_cls, name)), name


@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_stubs_describe_instance_attributes(stub_dir, cls):
    members = class_members(stub_class(stub_tree(stub_dir), cls))
    attrs = [n for n in vars(getattr(lmtp, cls)(*MAKE.get(cls, ()))) if not n.startswith("_")]
    missing = [n for n in attrs if n not in members]
    assert not missing, "%s attributes missing from the stubs: %s" % (cls, missing)


def test_stubs_describe_result(stub_dir):
    members = class_members(stub_class(stub_tree(stub_dir), "Result"))
    public = [n for n in lmtp.Result.__slots__ if not n.startswith("_")] + public_methods(lmtp.Result)
    missing = [n for n in public if n not in members]
    assert not missing, "Result members missing from the stubs: %s" % missing
    assert "recipients" in class_members(stub_class(stub_tree(stub_dir), "LMTPDataError"))


def test_stub_exceptions_are_smtplibs(stub_dir):
    tree = stub_tree(stub_dir)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("LMTP") and node.name.endswith("Error"):
            real = getattr(lmtp, node.name)
            stub_bases = [ast.unparse(b) for b in node.bases]
            # bases from builtins or from lmtp itself are written unqualified in the stub
            real_bases = ["%s.%s" % (b.__module__, b.__name__) if b.__module__ not in ("builtins", "lmtp") else b.__name__
                          for b in real.__bases__]
            assert stub_bases == real_bases, node.name


def _documented_objects():
    yield "lmtp", lmtp
    for name in lmtp.__all__:
        obj = getattr(lmtp, name)
        if inspect.isclass(obj) or inspect.isroutine(obj):
            yield "lmtp." + name, obj
        if inspect.isclass(obj) and obj.__module__ == "lmtp":
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, (property, classmethod, staticmethod)) or inspect.isfunction(value):
                    yield "lmtp.%s.%s" % (name, attr), getattr(obj, attr)


def test_every_public_name_has_a_docstring():
    undocumented = [name for name, obj in _documented_objects() if not (inspect.getdoc(obj) or "").strip()]
    assert not undocumented, "no docstring: %s" % undocumented


def test_all_is_complete():
    public = {n for n, v in vars(lmtp).items() if not n.startswith("_") and
              (inspect.isclass(v) or inspect.isfunction(v)) and getattr(v, "__module__", "") == "lmtp"}
    assert public <= set(lmtp.__all__)
    for name in lmtp.__all__:
        assert hasattr(lmtp, name), name
