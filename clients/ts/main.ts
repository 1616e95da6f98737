// A TypeScript client of relgraph.v1 over gRPC (Connect's gRPC transport on HTTP/2), from the stubs
// bin/gen-clients generates into gen/: calls FindWarmPaths and EstimateDealStage and prints one
// JSON line per call: {"rpc", "answer"} or {"rpc", "error"} (the status code's number and message).
//
//   RELGRAPH_KEY=rgk_... npx tsx main.ts --server 127.0.0.1:50051 --target-email cfo@buyer.example --deal D1
import { parseArgs } from "node:util";
import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WarmPathsService, FindWarmPathsResponseSchema } from "./gen/relgraph/v1/warm_paths_pb.ts";
import { BuyerIntelligenceService, EstimateDealStageResponseSchema } from "./gen/relgraph/v1/buyer_intelligence_pb.ts";

const { values } = parseArgs({
  options: {
    server: { type: "string", default: "127.0.0.1:50051" },
    "target-email": { type: "string" },
    deal: { type: "string" },
    "timeout-ms": { type: "string", default: "30000" },
  },
});
const key = process.env.RELGRAPH_KEY;
if (!key || !values["target-email"] || !values.deal) {
  console.error("relgraph-client: RELGRAPH_KEY, --target-email and --deal are needed");
  process.exit(2);
}

const withKey: Interceptor = (next) => (request) => {
  request.header.set("authorization", `Bearer ${key}`);
  return next(request);
};
const transport = createGrpcTransport({ baseUrl: `http://${values.server}`, interceptors: [withKey] });
const timeoutMs = Number(values["timeout-ms"]);

async function report<Desc extends DescMessage>(rpc: string, schema: Desc, answer: Promise<MessageShape<Desc>>) {
  try {
    console.log(JSON.stringify({ rpc, answer: toJson(schema, await answer) }));
  } catch (error) {
    const status = ConnectError.from(error);
    console.log(JSON.stringify({ rpc, error: { code: status.code, message: status.rawMessage } }));
  }
}

await report(
  "FindWarmPaths",
  FindWarmPathsResponseSchema,
  createClient(WarmPathsService, transport).findWarmPaths(
    { target: { case: "targetEmail", value: values["target-email"] } },
    { timeoutMs },
  ),
);
await report(
  "EstimateDealStage",
  EstimateDealStageResponseSchema,
  createClient(BuyerIntelligenceService, transport).estimateDealStage({ dealId: values.deal }, { timeoutMs }),
);
