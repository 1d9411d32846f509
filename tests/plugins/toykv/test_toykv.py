from opeval.testing import SubjectContract


class TestToyKV(SubjectContract):
    subject_name = "toykv"
