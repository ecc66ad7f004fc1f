import ArgumentParser
import Foundation
import Logging
import Strata
import StrataMemory
import StrataServer

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "An OpenAI-compatible HTTP server on the continuous-batching engine.",
        discussion: """
        Routes: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (stream: true for server-sent events), \
        GET /health, GET /metrics (Prometheus). Every request joins the one batching engine; a client that disconnects \
        cancels its request; over --max-running + --max-queued requests answer 429. Ctrl-C stops accepting, lets the \
        requests in flight finish, and exits.
        """)
    @Option(help: "Model folder or GGUF file.") var model: String
    @Option(name: .customLong("ram-budget"), help: "Hold weights, KV, activations and runtime under this many bytes (e.g. 2GiB); the planner places them.") var ramBudget: String?
    @Flag(name: .customLong("no-plan"), help: "Under --ram-budget, place with the fill-the-budget rule instead of the planner (no hardware profile needed).") var noPlan = false
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port (0: any free port; the bound one is printed).") var port = 8080
    @Option(name: .customLong("served-model-name"), help: "The model name clients send (default: the folder's or file's name).") var servedModelName: String?
    @Option(name: .customLong("max-running"), help: "Most requests decoding together (the batch).") var maxRunning = 16
    @Option(name: .customLong("max-queued"), help: "Most requests waiting beyond --max-running; more get 429.") var maxQueued = 64
    @Option(name: .customLong("max-context"), help: "Longest prompt + completion (default: the model's).") var maxContext: Int?
    @Option(name: .customLong("kv-memory"), help: "KV pool size without a budget (default: --max-running full contexts, at most 1GiB).") var kvMemory: String?
    @Option(name: .customLong("template-name"), help: "One of a list of named chat templates in tokenizer_config.json.") var templateName: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"
    @OptionGroup var threads: ThreadOption

    func validate() throws {
        if maxRunning < 1 { throw ValidationError("--max-running must be >= 1") }
        if maxQueued < 0 { throw ValidationError("--max-queued must be >= 0") }
        if !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535") }
        if let b = ramBudget, parseByteSize(b) == nil { throw ValidationError("--ram-budget: '\(b)' is not a size (e.g. 2GiB)") }
        if let m = kvMemory, parseByteSize(m) == nil { throw ValidationError("--kv-memory: '\(m)' is not a size") }
        if let c = maxContext, c < 2 { throw ValidationError("--max-context must be >= 2") }
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("--log-level: unknown level '\(logLevel)'") }
    }

    func run() throws {
        try threads.apply()
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "strata.serve")
        let folder = try ModelFolder(path: model)
        guard let tokenizer = folder.tokenizer else { throw ValidationError("\(model) has no tokenizer; the server needs one") }
        let chat = try folder.chatFormat(name: templateName)
        if chat == nil { logger.warning("\(model) has no chat template: /v1/chat/completions will answer 400") }
        let spec = folder.spec
        let context = min(maxContext ?? spec.maxPositions, spec.maxPositions)
        let workload = Workload(batch: maxRunning, promptTokens: max(1, context - context / 4), outputTokens: max(1, context / 4))
        let budget = ramBudget.flatMap(parseByteSize)
        var placement: Placement? = nil
        var kvBlocks: Int? = nil
        if let budget, !noPlan {
            let plan = try Session(folder: folder, ramBudget: budget).plan(workload, batch: maxRunning)
            placement = plan.placement
            logger.info("plan: \(plan.placement.streamedLayers.count) layers streamed, batch \(plan.placement.batchSize), \(plan.placement.kvBlocksRAM) KV blocks, predicted \(String(format: "%.2f", plan.prediction.decodeTokensPerSecond)) tokens/s per sequence")
        } else if budget == nil {
            let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: 16)
            let cap = kvMemory.flatMap(parseByteSize) ?? (1 << 30)
            kvBlocks = max(1, min(PlacementRule.kvBlocks(workload, blockSize: 16), cap / perBlock))
        }
        let run = try TieredRun(folder: folder, budget: budget, workload: workload, placement: placement, kvBlocks: kvBlocks)
        let engine = ServingEngine(run: run, maxQueued: maxQueued)
        engine.start()
        let name = servedModelName ?? URL(fileURLWithPath: model).lastPathComponent
        let served = ServedModel(id: name, tokenizer: tokenizer, chat: chat, defaults: folder.samplingDefaults, maxContext: engine.maxContext)
        let server = OpenAIServer(served: served, engine: engine, logger: logger)
        let bound = try server.start(host: host, port: port)
        logger.info("serving '\(name)' on http://\(host):\(bound) (batch \(run.engine.config.maxBatch), \(run.engine.kv.pool.blockCount) KV blocks, context \(engine.maxContext), RAM ledger \(formatBytes(run.ledger.total)))")
        eprint("listening on http://\(host):\(bound)")

        // Ctrl-C / SIGTERM: stop accepting, finish what runs, exit; a second one exits at once
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let queue = DispatchQueue(label: "strata.signals")
        var sources: [DispatchSourceSignal] = []
        let seen = Counter()
        for sig in [SIGINT, SIGTERM] {
            let src = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            src.setEventHandler {
                if seen.increment() > 1 { eprint("second signal: exiting now"); Foundation.exit(130) }
                logger.info("signal \(sig): no new requests; finishing the ones in flight")
                server.stopAccepting()
            }
            src.resume()
            sources.append(src)
        }
        try server.waitUntilClosed()
        engine.drain()
        engine.stop()
        try? server.shutdown()
        run.shutdown()
        let m = engine.snapshot()
        logger.info("stopped: \(m.requestsFinished) requests finished, \(m.requestsCancelled) cancelled, \(m.generatedTokensTotal) tokens generated")
        _ = sources
    }
}

/// A counter shared with signal handlers.
final class Counter: @unchecked Sendable {
    private var n = 0
    private let lock = NSLock()
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
}
