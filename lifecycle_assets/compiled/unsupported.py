"""The one error of the compiler: a pipeline shape it does not handle."""


class Unsupported(ValueError):
    """The pipeline has a shape the compiler does not handle; scikit-learn serves it."""
