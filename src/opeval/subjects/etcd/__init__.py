"""etcd, the default subject: a Raft key-value store of N members on this machine."""

from opeval.subjects.etcd._client import EtcdClient, EtcdError, etcd_bin_dir
from opeval.subjects.etcd._subject import CHAOS_KINDS, EtcdSubject

__all__ = ["CHAOS_KINDS", "EtcdClient", "EtcdError", "EtcdSubject", "etcd_bin_dir"]
