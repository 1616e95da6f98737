"""BuyerIntelligenceService: answered from promoted deal and buyer-process models. No such model
exists yet, so every call says so (FAILED_PRECONDITION) instead of inventing an answer."""

from __future__ import annotations

import grpc

from relgraph.errors import NoModelError
from relgraph.v1 import buyer_intelligence_pb2 as pb
from relgraph.v1 import buyer_intelligence_pb2_grpc

_NO_MODEL = "no model promoted: train and promote a {} model first"


class BuyerIntelligenceService(buyer_intelligence_pb2_grpc.BuyerIntelligenceServiceServicer):  # type: ignore[misc]
    def PredictBuyerProcess(self, request: pb.PredictBuyerProcessRequest,
                            context: grpc.ServicerContext) -> pb.PredictBuyerProcessResponse:
        raise NoModelError(_NO_MODEL.format("buyer-process"))

    def EstimateDealStage(self, request: pb.EstimateDealStageRequest,
                          context: grpc.ServicerContext) -> pb.EstimateDealStageResponse:
        raise NoModelError(_NO_MODEL.format("deal"))

    def ListDealSignals(self, request: pb.ListDealSignalsRequest,
                        context: grpc.ServicerContext) -> pb.ListDealSignalsResponse:
        raise NoModelError(_NO_MODEL.format("deal"))
