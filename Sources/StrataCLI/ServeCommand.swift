import ArgumentParser
import Foundation
import Logging
import Strata
import StrataMPI
import StrataServer

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "An OpenAI-compatible HTTP server on the continuous-batching engine.",
        discussion: """
        Routes: GET /v1/models, GET /v1/models/{id}, POST /v1/completions, POST /v1/chat/completions (stream: true for \
        server-sent events), POST /tokenize, POST /detokenize, GET /health, GET /metrics (Prometheus); OPTIONS answers \
        CORS preflights. Every request joins the one batching engine; a client that disconnects \
        cancels its request; over --max-running + --max-queued requests answer 429. Ctrl-C stops accepting, lets the \
        requests in flight finish, and exits.
        """)
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder or GGUF file.") var model: String
    @Option(name: .customLong("ram-budget"), help: "Hold weights, KV, activations and runtime under this many bytes (e.g. 2GiB); the planner places them.") var ramBudget: String?
    @Flag(name: .customLong("no-plan"), help: "Under --ram-budget, place with the fill-the-budget rule instead of the planner (no hardware profile needed).") var noPlan = false
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port (0: any free port; the bound one is printed).") var port = 8080
    @Option(name: .customLong("served-model-name"), help: "The model name clients send (default: the folder's or file's name).") var servedModelName: String?
    @OptionGroup var distributed: DistributedOption
    @Option(name: .customLong("max-running"), help: "Most requests decoding together (the batch).") var maxRunning = 16
    @Option(name: .customLong("max-queued"), help: "Most requests waiting beyond --max-running; more get 429.") var maxQueued = 64
    @Option(name: [.customLong("max-context"), .customShort("c")], help: "Longest prompt + completion (default: the model's).") var maxContext: Int?
    @Option(name: .customLong("kv-memory"), help: "KV pool size without a budget (default: --max-running full contexts, at most half the RAM available beside the weights).") var kvMemory: String?
    @Option(name: .customLong("template-name"), help: "One of a list of named chat templates in tokenizer_config.json.") var templateName: String?
    @Option(name: .customLong("chat-template"), help: "A Jinja chat template file used instead of the model's (a model without one can then serve chat).") var chatTemplate: String?
    @Option(name: .customLong("api-key"), help: "Require 'Authorization: Bearer KEY' on every route but /health (401 otherwise). Default: the STRATA_API_KEY environment variable, if set.")
    var apiKey: String?
    @Option(name: .customLong("cors-origin"), help: "Allow browser pages of this origin (or *) to call the server: Access-Control-Allow-Origin on every response, preflights answered.")
    var corsOrigin: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"
    @OptionGroup var threads: ThreadOption
    @OptionGroup var kv: KVTypeOption

    func validate() throws {
        try checkFlag(maxRunning, 1...1024, "--max-running")
        try checkFlag(maxQueued, 0...100_000, "--max-queued")
        if !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535") }
        if let b = ramBudget, parseByteSize(b) == nil { throw ValidationError("--ram-budget: '\(b)' is not a size (e.g. 2GiB)") }
        if let m = kvMemory, parseByteSize(m) == nil { throw ValidationError("--kv-memory: '\(m)' is not a size") }
        if let c = maxContext { try checkFlag(c, 2...(1 << 24), "--max-context") }
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("--log-level: unknown level '\(logLevel)'") }
        if let k = apiKey, k.isEmpty || k.contains(where: { $0.isWhitespace }) { throw ValidationError("--api-key: must be non-empty, without spaces") }
        if let o = corsOrigin, o.isEmpty || o.contains(where: { $0.isWhitespace || $0 == "," }) {
            throw ValidationError("--cors-origin: one origin (e.g. https://app.example.com) or *, got '\(o)'")
        }
    }

    func run() throws {
        try threads.apply()
        if MPIWorld.launched {
            return try Distributed.run(model: model, budget: ramBudget.flatMap(parseByteSize), options: distributed) { try serve() }
        }
        try serve()
    }

    func serve() throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "strata.serve")
        let name = servedModelName ?? URL(fileURLWithPath: model).lastPathComponent
        let server = try OpenAIServer.make(model: model, name: name, ramBudget: ramBudget.flatMap(parseByteSize), plan: !noPlan,
                                           maxRunning: maxRunning, maxQueued: maxQueued, maxContext: maxContext,
                                           kvMemory: kvMemory.flatMap(parseByteSize), kvType: kv.requested, templateName: templateName, templateFile: chatTemplate, logger: logger)
        let key = apiKey ?? ProcessInfo.processInfo.environment["STRATA_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        if let k = key, k.contains(where: { $0.isWhitespace }) { throw ValidationError("STRATA_API_KEY: must be without spaces") }
        server.apiKey = key
        server.corsOrigin = corsOrigin
        let engine = server.engine, run = engine.run
        let bound: Int
        do { bound = try server.start(host: host, port: port) } catch let e as APIError {
            engine.stop(); run.shutdown()
            eprint("error: \(e.message)")
            throw ExitCode(1)
        }
        logger.info("serving '\(name)' on http://\(host):\(bound) (batch \(run.engine.config.maxBatch), \(run.engine.kv.pool.blockCount) KV blocks, context \(engine.maxContext), RAM ledger \(formatBytes(run.ledger.total)))")
        if let pipeline = Pipelines.current as? MPIPipeline, !pipeline.stages.isEmpty {
            logger.info("pipeline: \(pipeline.splitDescription)")
        }
        if key != nil { logger.info("an API key is required (Authorization: Bearer ...)") }
        eprint("listening on http://\(host):\(bound)")

        // Ctrl-C / SIGTERM / SIGHUP: stop accepting, finish what runs, exit; a second one exits at once
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        let queue = DispatchQueue(label: "strata.signals")
        var sources: [DispatchSourceSignal] = []
        let seen = Counter()
        for sig in [SIGINT, SIGTERM, SIGHUP] {
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
