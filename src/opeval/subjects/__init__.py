"""Subjects: the distributed systems opeval breaks (etcd today)."""

from opeval._plugins import Registry
from opeval.subjects._etcd import EtcdClient, EtcdError, EtcdSubject, etcd_bin_dir
from opeval.subjects._protocol import KeyValueClient, Subject

#: Subjects by name (entry-point group ``opeval.subjects``).
SUBJECTS: Registry[type] = Registry("subject", "opeval.subjects")
SUBJECTS.register("etcd")(EtcdSubject)

__all__ = ["SUBJECTS", "EtcdClient", "EtcdError", "EtcdSubject", "KeyValueClient", "Subject", "etcd_bin_dir"]
