"""Neighbour sampling in pure PyTorch, plugged into PyG's loaders.

PyG's `NeighborSampler` delegates the sampling itself to pyg-lib or torch-sparse. Neither installs
from PyPI here (pyg-lib has no distribution; torch-sparse compiles from source for about a quarter
of an hour), so `TorchNeighborSampler` replaces only that step, `_sample`, with vectorized tensor
operations; everything around it (seed handling, negative sampling, `LinkNeighborLoader`, feature
filtering) stays PyG's. Homogeneous graphs, directional (non-induced) subgraphs, sampling without
replacement: the subset of PyG's options the link model uses; the rest are refused at construction."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.sampler import NeighborSampler, SamplerOutput
from torch_geometric.sampler.base import SubgraphType


class TorchNeighborSampler(NeighborSampler):  # type: ignore[misc]  # PyG is untyped
    """`NeighborSampler` whose sampling step runs in PyTorch (see the module docstring).

    Args:
        data: a homogeneous graph (`edge_index` of shape (2, E)).
        num_neighbors: neighbours sampled per node at each hop, e.g. `[10, 5]`; -1 takes all.
        seed: seeds the sampler's own generator, so a run is reproducible.
    """

    def __init__(self, data: Data, num_neighbors: list[int], seed: int = 0) -> None:
        if not isinstance(data, Data):
            raise TypeError(f"TorchNeighborSampler samples homogeneous graphs (Data), not {type(data).__name__}")
        with warnings.catch_warnings():
            # PyG warns that sampling without pyg-lib is deprecated: this class is the replacement.
            warnings.filterwarnings("ignore", message=".*without a 'pyg-lib' installation.*")
            super().__init__(data, num_neighbors=num_neighbors, subgraph_type=SubgraphType.directional)
        self._hops = list(num_neighbors)
        self._generator = torch.Generator().manual_seed(seed)
        self._degree = self.colptr[1:] - self.colptr[:-1]
        # Global -> local node index during one sampling call; reset to -1 for the touched nodes only.
        self._local = torch.full((int(self.num_nodes),), -1, dtype=torch.long)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_nodes={self.num_nodes}, num_neighbors={self._hops})"

    def _sample(self, seed: Tensor, seed_time: Tensor | None = None, **kwargs: Any) -> SamplerOutput:
        if isinstance(seed, dict) or seed_time is not None:
            raise ValueError("TorchNeighborSampler supports homogeneous, non-temporal sampling only")
        node = torch.unique(seed.to(torch.long))  # PyG passes unique seeds already; this keeps the contract explicit
        self._local[node] = torch.arange(node.numel())
        frontier = node
        rows: list[Tensor] = []
        cols: list[Tensor] = []
        edges: list[Tensor] = []
        num_nodes, num_edges = [node.numel()], []
        parts = [node]
        count = node.numel()
        for k in self._hops:
            position, target = self._pick(frontier, k)
            neighbor = self.row[position]
            fresh = self._local[neighbor] < 0
            new = neighbor[fresh].unique()
            self._local[new] = torch.arange(count, count + new.numel())
            count += new.numel()
            parts.append(new)
            rows.append(self._local[neighbor])
            cols.append(self._local[target])
            edges.append(position)
            num_nodes.append(new.numel())
            num_edges.append(position.numel())
            frontier = new
        node = torch.cat(parts)
        self._local[node] = -1
        return SamplerOutput(
            node=node,
            row=torch.cat(rows),
            col=torch.cat(cols),
            edge=torch.cat(edges),
            batch=None,
            num_sampled_nodes=num_nodes,
            num_sampled_edges=num_edges,
        )

    def _pick(self, frontier: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Up to `k` incoming-edge positions (CSC order) per frontier node, without replacement,
        and the frontier node each belongs to."""
        degree = self._degree[frontier]
        total = int(degree.sum())
        owner = torch.repeat_interleave(torch.arange(frontier.numel()), degree)
        start = torch.repeat_interleave(self.colptr[frontier] - torch.cumsum(degree, 0) + degree, degree)
        position = start + torch.arange(total)  # every incoming edge of the frontier
        if k >= 0 and total:
            # A random order within each node's edges (sort by owner, then a random key), keep the first k.
            key = owner.to(torch.float64) + torch.rand(total, generator=self._generator, dtype=torch.float64)
            order = torch.argsort(key)
            rank = torch.arange(total) - torch.repeat_interleave(torch.cumsum(degree, 0) - degree, degree)
            keep = order[rank < k]
            position, owner = position[keep], owner[keep]
        return position, frontier[owner]
