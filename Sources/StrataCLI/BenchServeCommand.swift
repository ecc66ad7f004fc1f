import ArgumentParser
import Foundation
import Logging
import Strata
import StrataServer

struct BenchServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-serve",
        abstract: "Benchmark strata serve like vllm bench serve: N concurrent streaming clients over loopback.",
        discussion: "Starts the server in this process on a free port (or uses --url), then for each client count sends --requests-per-client streamed text completions per client back to back: random token-id prompts of --prompt-tokens, --max-tokens out with ignore_eos. Prints request throughput, output tokens/s, TTFT and inter-token latency percentiles; --out writes them as JSON.")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder or GGUF file.") var model: String
    @Option(name: .customLong("clients"), parsing: .upToNextOption, help: "Client counts to run: 1,4,16 or 1 4 16.") var clientLists: [IntList] = [IntList([1, 4, 16])]
    @Option(name: .customLong("requests-per-client"), help: "Requests each client sends, one after another.") var requestsPerClient = 2
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length (random token ids).") var promptTokens = 32
    @Option(name: .customLong("max-tokens"), help: "Tokens generated per request.") var maxTokens = 64
    @Option(name: .customLong("ram-budget"), help: "RAM budget of the in-process server (e.g. 2GiB).") var ramBudget: String?
    @Option(name: .customLong("max-running"), help: "The server's batch (default: the largest client count).") var maxRunning: Int?
    @Option(help: "Benchmark a running server at this URL (http://host:port) instead of starting one.") var url: String?
    @Option(name: .customLong("served-model-name"), help: "Model name to send (with --url).") var servedModelName: String?
    @Option(help: "Write the results as JSON here.") var out: String?
    @OptionGroup var threads: ThreadOption

    func run() throws {
        if let out { try FileIO.requireReplaceable(out) }  // before any work
        try threads.apply()
        let counts = IntList.all(clientLists)
        guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 && $0 <= 256 }) else { throw ValidationError("--clients: counts in 1...256, e.g. 1,4,16") }
        guard promptTokens >= 1, maxTokens >= 1, requestsPerClient >= 1 else { throw ValidationError("--prompt-tokens, --max-tokens and --requests-per-client must be >= 1") }
        let results = try ServeBench.run(model: model, counts: counts, requestsPerClient: requestsPerClient, promptTokens: promptTokens,
                                         maxTokens: maxTokens, ramBudget: ramBudget.flatMap(parseByteSize), maxRunning: maxRunning, url: url,
                                         servedModelName: servedModelName, log: eprint)
        print(ServeBench.table(results))
        if let out {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try FileIO.writeAtomically(out, enc.encode(results))
        }
    }
}

enum ServeBench {
    static func run(model: String, counts: [Int], requestsPerClient: Int, promptTokens: Int, maxTokens: Int, ramBudget: Int?,
                    maxRunning: Int?, url: String?, servedModelName: String?, log: (String) -> Void) throws -> [ServeBenchmark.Result] {
        var server: OpenAIServer? = nil
        var host = "127.0.0.1", port = 0
        var name = servedModelName ?? URL(fileURLWithPath: model).lastPathComponent
        var vocab = 0
        if let url {
            guard let u = URL(string: url), let h = u.host, let p = u.port else { throw ValidationError("--url: expected http://host:port") }
            host = h; port = p
            vocab = try ModelFolder(path: model).spec.vocabSize
        } else {
            var logger = Logger(label: "strata.bench-serve")
            logger.logLevel = .warning
            let s = try OpenAIServer.make(model: model, name: name, ramBudget: ramBudget, maxRunning: maxRunning ?? counts.max()!,
                                          maxQueued: 1024, maxContext: promptTokens + maxTokens + 16, logger: logger)
            port = try s.start(host: host, port: 0)
            server = s
            name = s.served.id
            vocab = s.served.tokenizer.vocabSize
        }
        defer {
            if let server {
                server.stopAccepting()
                server.engine.drain()
                server.engine.stop()
                try? server.shutdown()
                server.engine.run.shutdown()
            }
        }
        let bench = ServeBenchmark(host: host, port: port, model: name)
        let (modelName, vocabSize) = (name, vocab)
        // warm up: one request (weights paged in, buffers sized)
        _ = bench.run(clients: 1, requestsPerClient: 1) { _ in body(modelName, seed: 999_999, vocab: vocabSize, prompt: promptTokens, max: 4) }
        var results: [ServeBenchmark.Result] = []
        for c in counts {
            log("bench-serve: \(c) client\(c == 1 ? "" : "s") x \(requestsPerClient) requests, \(promptTokens) prompt tokens, \(maxTokens) out")
            let r = bench.run(clients: c, requestsPerClient: requestsPerClient) { i in body(modelName, seed: c * 10_000 + i, vocab: vocabSize, prompt: promptTokens, max: maxTokens) }
            results.append(r)
        }
        return results
    }

    /// A text completion of random token ids (distinct per request: no prefix cache hits).
    static func body(_ name: String, seed: Int, vocab: Int, prompt: Int, max: Int) -> JSONValue {
        var rng = Xoshiro256(seed: UInt64(seed))
        let ids = (0..<prompt).map { _ in JSONValue.int(Int(rng.next() % UInt64(Swift.max(1, vocab - 1000))) + 500) }
        return .object([("model", .string(name)), ("prompt", .array(ids)), ("max_tokens", .int(max)), ("temperature", .int(0)),
                        ("ignore_eos", .bool(true))])
    }

    static func table(_ rs: [ServeBenchmark.Result]) -> String {
        var s = "clients  requests  failed  req/s   out tok/s  TTFT p50/p90/p99 ms     ITL p50/p90/p99 ms     e2e p50 ms\n"
        for r in rs {
            s += String(format: "%7d  %8d  %6d  %6.2f  %9.1f  %6.0f %6.0f %6.0f   %6.1f %6.1f %6.1f   %8.0f\n", r.clients, r.requests, r.failed,
                        r.requestsPerSecond, r.outputTokensPerSecond, r.ttftP50, r.ttftP90, r.ttftP99, r.itlP50, r.itlP90, r.itlP99, r.e2eP50)
        }
        if let one = rs.first(where: { $0.clients == 1 }), one.outputTokensPerSecond > 0 {
            for r in rs where r.clients > 1 { s += String(format: "output tokens/s at %d clients: %.2fx 1 client\n", r.clients, r.outputTokensPerSecond / one.outputTokensPerSecond) }
        }
        return s
    }
}
