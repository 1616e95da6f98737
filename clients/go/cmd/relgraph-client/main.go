// relgraph-client calls FindWarmPaths and EstimateDealStage on a relgraph server through the
// generated Go client, and prints one JSON line per call: {"rpc", "answer"} or {"rpc", "error"}
// (the status code's number and message).
//
//	RELGRAPH_KEY=rgk_... relgraph-client -server 127.0.0.1:50051 -target-email cfo@buyer.example -deal D1
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	relgraphv1 "relgraph.local/clients/go/gen/relgraph/v1"
)

func main() {
	server := flag.String("server", "127.0.0.1:50051", "relgraph gRPC address")
	targetEmail := flag.String("target-email", "", "warm paths to this person")
	deal := flag.String("deal", "", "stage estimate of this deal")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline of each call")
	flag.Parse()
	key := os.Getenv("RELGRAPH_KEY")
	if key == "" || *targetEmail == "" || *deal == "" {
		fmt.Fprintln(os.Stderr, "relgraph-client: RELGRAPH_KEY, -target-email and -deal are needed")
		os.Exit(2)
	}
	conn, err := grpc.NewClient(*server, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "relgraph-client:", err)
		os.Exit(1)
	}
	defer conn.Close()
	call := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key), cancel
	}

	ctx, cancel := call()
	paths, err := relgraphv1.NewWarmPathsServiceClient(conn).FindWarmPaths(
		ctx, &relgraphv1.FindWarmPathsRequest{Target: &relgraphv1.FindWarmPathsRequest_TargetEmail{TargetEmail: *targetEmail}})
	cancel()
	report("FindWarmPaths", paths, err)

	ctx, cancel = call()
	stage, err := relgraphv1.NewBuyerIntelligenceServiceClient(conn).EstimateDealStage(
		ctx, &relgraphv1.EstimateDealStageRequest{DealId: *deal})
	cancel()
	report("EstimateDealStage", stage, err)
}

// report prints one call's outcome as a JSON line: the answer in proto3 JSON, or the status.
func report(rpc string, answer proto.Message, err error) {
	line := map[string]any{"rpc": rpc}
	if err != nil {
		s := status.Convert(err)
		line["error"] = map[string]any{"code": int(s.Code()), "message": s.Message()} // the gRPC code number
	} else {
		encoded, _ := protojson.Marshal(answer)
		line["answer"] = json.RawMessage(encoded)
	}
	out, _ := json.Marshal(line)
	fmt.Println(string(out))
}
