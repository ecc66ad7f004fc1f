import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Strata
import StrataMemory

/// `strata serve`: an OpenAI-compatible HTTP/1.1 server (SwiftNIO) in front of one
/// `ServingEngine`. Routes: GET /health, GET /v1/models, POST /v1/completions,
/// POST /v1/chat/completions (JSON, or server-sent events with `stream: true`), GET /metrics
/// (Prometheus text). A client that disconnects cancels its request.
public final class OpenAIServer: @unchecked Sendable {
    public let served: ServedModel
    public let engine: ServingEngine
    public let logger: Logger
    /// Largest request body accepted (413 beyond).
    public var maxBodyBytes = 16 << 20
    /// Requests must carry `Authorization: Bearer <apiKey>` (401 otherwise; /health and CORS
    /// preflights excepted, as llama-server and vLLM do); nil: no key.
    public var apiKey: String?
    /// The `Access-Control-Allow-Origin` every response carries and preflights answer with (a
    /// browser page of that origin may call the server); nil: none.
    public var corsOrigin: String?
    /// Where requests are parsed, templated and tokenized: off the event loop.
    let prepareQueue = DispatchQueue(label: "strata.serve.prepare", qos: .userInitiated, attributes: .concurrent)
    let group: MultiThreadedEventLoopGroup
    var channel: Channel?
    private let lock = NSLock()
    private var httpCounts: [Int: Int] = [:]
    private var draining = false

    public init(served: ServedModel, engine: ServingEngine, logger: Logger, threads: Int = 1) {
        self.served = served
        self.engine = engine
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    }

    /// A server for the model at `model` (folder or GGUF): the tiered run (planned under
    /// `ramBudget` unless `plan` is false; without a budget all resident with a KV pool of
    /// `maxRunning` full contexts, at most `kvMemory`, else at most half the RAM the machine has
    /// available beside the weights), K/V stored as `kvType`, its engine started.
    public static func make(model: String, name: String, ramBudget: Int?, plan: Bool = true, maxRunning: Int, maxQueued: Int,
                            maxContext: Int? = nil, kvMemory: Int? = nil, kvType: DType = .kvDefault, templateName: String? = nil,
                            templateFile: String? = nil, logger: Logger) throws -> OpenAIServer {
        let folder = try ModelFolder(path: model)
        guard let tokenizer = folder.tokenizer else { throw APIError(500, "\(model) has no tokenizer; the server needs one") }
        let chat = try folder.chatFormat(name: templateName, templateFile: templateFile)
        if chat == nil { logger.warning("\(model) has no chat template: /v1/chat/completions will answer 400") }
        // the engine from the library's one assembly (Session); the server only serves it
        let run = try Session(folder: folder, ramBudget: ramBudget).servingRun(maxRunning: maxRunning, maxContext: maxContext, kvMemory: kvMemory,
                                                                               kvType: kvType, plan: plan) { logger.info("\($0)") }
        let engine = ServingEngine(run: run, maxQueued: maxQueued)
        engine.start()
        let served = ServedModel(id: name, tokenizer: tokenizer, chat: chat, defaults: folder.samplingDefaults, maxContext: engine.maxContext,
                                 defaultMaxTokens: folder.generation?.maxNewTokens, eos: run.engine.loaded.eos,
                                 pooling: isDirectory(model) ? try EmbeddingPooling.read(directory: model) : .decoderDefault,
                                 hiddenSize: run.engine.loaded.spec.hiddenSize)
        return OpenAIServer(served: served, engine: engine, logger: logger)
    }

    /// Binds and returns the bound port (`port` 0: any free one).
    public func start(host: String, port: Int) throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPHandler(server: self))
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        let ch: Channel
        do {
            ch = try bootstrap.bind(host: host, port: port).wait()
        } catch let e as IOError where e.errnoCode == EADDRINUSE {
            throw APIError(500, "cannot listen on \(host):\(port): the port is in use (another server?); choose another with --port", type: "bind_error")
        } catch let e as IOError where e.errnoCode == EADDRNOTAVAIL || e.errnoCode == EACCES {
            throw APIError(500, "cannot listen on \(host):\(port): \(e)", type: "bind_error")
        }
        channel = ch
        return ch.localAddress?.port ?? port
    }

    /// Blocks until `stopAccepting` closes the listening socket.
    public func waitUntilClosed() throws { try channel?.closeFuture.wait() }

    /// Stops accepting connections; requests in flight go on (`engine.drain()` waits for them).
    public func stopAccepting() {
        lock.lock(); draining = true; lock.unlock()
        channel?.close(promise: nil)
    }

    public func shutdown() throws { try group.syncShutdownGracefully() }

    var isDraining: Bool { lock.lock(); defer { lock.unlock() }; return draining }

    func count(_ status: Int) { lock.lock(); httpCounts[status, default: 0] += 1; lock.unlock() }

    /// The Prometheus text exposition of the engine's and the server's counters.
    func metricsText() -> String {
        let m = engine.snapshot()
        lock.lock(); let http = httpCounts; lock.unlock()
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ values: [(String, Int)]) {
            out += "# HELP strata_\(name) \(help)\n# TYPE strata_\(name) \(type)\n"
            for (labels, v) in values { out += "strata_\(name)\(labels) \(v)\n" }
        }
        metric("requests_total", "counter", "Generation requests accepted.", [("", m.requestsTotal)])
        metric("requests_finished_total", "counter", "Requests that ran to completion.", [("", m.requestsFinished)])
        metric("requests_cancelled_total", "counter", "Requests cancelled (the client went away).", [("", m.requestsCancelled)])
        metric("requests_failed_total", "counter", "Requests that failed in the engine.", [("", m.requestsFailed)])
        metric("requests_rejected_total", "counter", "Requests refused: too many running and queued, or shutting down.", [("", m.requestsRejected)])
        metric("http_responses_total", "counter", "HTTP responses by status.", http.keys.sorted().map { ("{status=\"\($0)\"}", http[$0]!) })
        metric("prompt_tokens_total", "counter", "Prompt tokens of accepted requests.", [("", m.promptTokensTotal)])
        metric("generation_tokens_total", "counter", "Tokens generated by finished requests.", [("", m.generatedTokensTotal)])
        metric("requests_running", "gauge", "Requests in flight (queued or decoding).", [("", m.running)])
        metric("queue_depth", "gauge", "Sequences waiting to be admitted to the batch.", [("", m.queued)])
        metric("running_sequences", "gauge", "Sequences in the running batch.", [("", m.runningSequences)])
        metric("kv_blocks_total", "gauge", "KV cache blocks in RAM.", [("", m.kvBlocksTotal)])
        metric("kv_blocks_used", "gauge", "KV blocks held by sequences.", [("", m.kvBlocksUsed)])
        metric("kv_blocks_free", "gauge", "KV blocks free (including cached prefix blocks that can be reused).", [("", m.kvBlocksFree)])
        metric("kv_blocks_cached", "gauge", "Free KV blocks still holding a cached prefix.", [("", m.kvBlocksCached)])
        metric("ledger_bytes", "gauge", "Bytes charged to the RAM ledger.", [("", m.ledgerBytes)])
        metric("ledger_peak_bytes", "gauge", "Peak bytes charged to the RAM ledger.", [("", m.ledgerPeakBytes)])
        if let b = m.ledgerBudgetBytes { metric("ram_budget_bytes", "gauge", "The RAM budget.", [("", b)]) }
        metric("disk_read_bytes_total", "counter", "Bytes read from disk (streamed weights and swapped-in KV).", [("", m.diskBytesRead)])
        metric("engine_steps_total", "counter", "Batch engine steps.", [("", m.steps)])
        return out
    }
}

/// One connection: collects a request, answers it (streamed or whole), cancels its generation
/// when the connection closes first.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let server: OpenAIServer
    var head: HTTPRequestHead?
    var body = ByteBuffer()
    var tooLarge = false
    /// the engine handle of the request being answered
    var active: Int?
    var open = true

    init(server: OpenAIServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(h):
            head = h
            body.clear()
            tooLarge = false
        case var .body(b):
            if body.readableBytes + b.readableBytes > server.maxBodyBytes { tooLarge = true } else { body.writeBuffer(&b) }
        case .end:
            guard let h = head else { return }
            head = nil
            handle(context: context, head: h)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        open = false
        if let a = active {
            server.engine.cancel(a)
            server.logger.info("client went away: request cancelled")
            active = nil
        }
        context.fireChannelInactive()
    }

    // MARK: writing

    func send(context: ChannelHandlerContext, _ h: HTTPRequestHead, status: HTTPResponseStatus, contentType: String, body text: String, started: Double? = nil) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: contentType)
        let bytes = Array(text.utf8)
        headers.add(name: "content-length", value: String(bytes.count))
        let keepAlive = h.isKeepAlive
        headers.add(name: "connection", value: keepAlive ? "keep-alive" : "close")
        addCORS(&headers)
        if status == .unauthorized { headers.add(name: "www-authenticate", value: "Bearer") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
        var buf = context.channel.allocator.buffer(capacity: bytes.count)
        buf.writeBytes(bytes)
        context.write(wrapOutboundOut(.body(.byteBuffer(buf))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) } }
        server.count(Int(status.code))
        let secs = started.map { String(format: " %.3fs", ProcessInfo.processInfo.systemUptime - $0) } ?? ""
        server.logger.info("\(h.method) \(h.uri) \(status.code)\(secs)")
    }

    func sendJSON(context: ChannelHandlerContext, _ h: HTTPRequestHead, status: HTTPResponseStatus = .ok, _ v: JSONValue, started: Double? = nil) {
        send(context: context, h, status: status, contentType: "application/json", body: v.compact, started: started)
    }

    func sendError(context: ChannelHandlerContext, _ h: HTTPRequestHead, _ e: APIError) {
        sendJSON(context: context, h, status: HTTPResponseStatus(statusCode: e.status), e.json)
    }

    func addCORS(_ headers: inout HTTPHeaders) {
        if let o = server.corsOrigin {
            headers.add(name: "access-control-allow-origin", value: o)
            if o != "*" { headers.add(name: "vary", value: "Origin") }
        }
    }

    /// Whether the request carries the server's key (`Authorization: Bearer <key>`), compared in
    /// time that does not depend on where the two differ.
    func authorized(_ h: HTTPRequestHead) -> Bool {
        guard let key = server.apiKey else { return true }
        guard let value = h.headers.first(name: "authorization") else { return false }
        let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        return constantTimeEqual(Array(parts[1].utf8), Array(key.utf8))
    }

    // MARK: routing

    func handle(context: ChannelHandlerContext, head h: HTTPRequestHead) {
        let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
        if tooLarge { return sendError(context: context, h, APIError(413, "request body larger than \(server.maxBodyBytes) bytes")) }
        if h.method == .OPTIONS {
            // a CORS preflight (or a client asking what a route allows): no key needed
            var headers = HTTPHeaders()
            headers.add(name: "allow", value: "GET, POST, OPTIONS")
            headers.add(name: "content-length", value: "0")
            if server.corsOrigin != nil {
                addCORS(&headers)
                headers.add(name: "access-control-allow-methods", value: "GET, POST, OPTIONS")
                headers.add(name: "access-control-allow-headers",
                            value: h.headers.first(name: "access-control-request-headers") ?? "authorization, content-type")
                headers.add(name: "access-control-max-age", value: "86400")
            }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .noContent, headers: headers))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            server.count(204)
            return
        }
        if path != "/health" && path != "/v1/health" && !authorized(h) {
            return sendError(context: context, h, APIError(401, "Incorrect or missing API key: send the key given to strata serve as 'Authorization: Bearer <key>'",
                                                          code: "invalid_api_key"))
        }
        if h.method == .GET, path.hasPrefix("/v1/models/"), path.count > "/v1/models/".count {
            let raw = String(path.dropFirst("/v1/models/".count))
            do { return sendJSON(context: context, h, try server.served.model(raw.removingPercentEncoding ?? raw)) } catch let e as APIError {
                return sendError(context: context, h, e)
            } catch { return sendError(context: context, h, APIError(500, "\(error)")) }
        }
        switch (h.method, path) {
        case (.GET, "/health"), (.GET, "/v1/health"):
            if server.isDraining { return sendError(context: context, h, APIError(503, "shutting down", type: "unavailable")) }
            sendJSON(context: context, h, .object([("status", "ok")]))
        case (.GET, "/v1/models"):
            sendJSON(context: context, h, server.served.modelsList)
        case (.GET, "/metrics"):
            send(context: context, h, status: .ok, contentType: "text/plain; version=0.0.4", body: server.metricsText())
        case (.POST, "/v1/completions"), (.POST, "/v1/chat/completions"):
            complete(context: context, head: h, chat: path.hasSuffix("chat/completions"))
        case (.POST, "/v1/embeddings"):
            embeddings(context: context, head: h)
        case (.POST, "/tokenize"), (.POST, "/detokenize"):
            let served = server.served, tokenize = path == "/tokenize"
            answer(context: context, head: h) { try tokenize ? served.tokenize($0) : served.detokenize($0) }
        case (_, "/health"), (_, "/v1/models"), (_, "/metrics"), (_, "/v1/completions"), (_, "/v1/chat/completions"), (_, "/tokenize"), (_, "/detokenize"), (_, "/v1/embeddings"):
            sendError(context: context, h, APIError(405, "method \(h.method) not allowed on \(path)"))
        default:
            sendError(context: context, h, APIError(404, "no route \(h.method) \(path)", code: "not_found"))
        }
    }

    /// The request body parsed as JSON and given to `work` on `server.prepareQueue`, off the event
    /// loop (a long prompt, a slow template or a long text to tokenize must not stall `/health` or
    /// the other connections); then, back on the loop, `then` with its result, or the error it
    /// threw (an `APIError` as given, any other as a 400).
    func offLoop<T: Sendable>(context: ChannelHandlerContext, head h: HTTPRequestHead, _ work: @escaping @Sendable (JSONValue) throws -> T,
                              then: @escaping (HTTPHandler, ChannelHandlerContext, T) -> Void) {
        let data = Data(body.readableBytesView)
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let thenBound = NIOLoopBound(then, eventLoop: loop)
        server.prepareQueue.async {
            let result: Result<T, APIError>
            do {
                let doc: JSONValue
                do { doc = try JSONValue.parse(data) } catch { throw APIError(400, "the request body is not valid JSON: \(error)") }
                result = .success(try work(doc))
            } catch let e as APIError {
                result = .failure(e)
            } catch {
                result = .failure(APIError(400, "\(error)"))
            }
            loop.execute {
                let (handler, ctx) = bound.value
                guard handler.open else { return }
                switch result {
                case let .failure(e): handler.sendError(context: ctx, h, e)
                case let .success(v): thenBound.value(handler, ctx, v)
                }
            }
        }
    }

    /// `POST /v1/embeddings`: inputs tokenized off the loop, their hidden states computed on the
    /// engine's thread between steps, pooled, answered on the loop.
    func embeddings(context: ChannelHandlerContext, head h: HTTPRequestHead) {
        let started = ProcessInfo.processInfo.systemUptime
        let served = server.served
        offLoop(context: context, head: h, { try served.parseEmbeddings($0) }) { handler, ctx, job in
            let loop = ctx.eventLoop
            let bound = NIOLoopBound((handler, ctx), eventLoop: loop)
            let pooling = served.pooling
            do {
                try handler.server.engine.onEngine({ model in try job.inputs.map { pooling.pool(try model.hiddenStates($0.map(Int32.init))) } }) { result in
                    loop.execute {
                        let (handler, ctx) = bound.value
                        guard handler.open else { return }
                        switch result {
                        case let .success(vectors): handler.sendJSON(context: ctx, h, served.embeddingsResponse(job, vectors), started: started)
                        case let .failure(e): handler.sendError(context: ctx, h, APIError(500, "\(e)", type: "server_error"))
                        }
                    }
                }
            } catch {
                handler.sendError(context: ctx, h, handler.apiError(error))
            }
        }
    }

    /// A JSON request answered by `work` (off the event loop): its answer.
    func answer(context: ChannelHandlerContext, head h: HTTPRequestHead, _ work: @escaping @Sendable (JSONValue) throws -> JSONValue) {
        let started = ProcessInfo.processInfo.systemUptime
        offLoop(context: context, head: h, work) { handler, ctx, v in handler.sendJSON(context: ctx, h, v, started: started) }
    }

    /// Parses the request, renders its chat template and tokenizes its prompt (off the event
    /// loop), then submits it from the loop.
    func complete(context: ChannelHandlerContext, head h: HTTPRequestHead, chat: Bool) {
        let started = ProcessInfo.processInfo.systemUptime
        let served = server.served
        offLoop(context: context, head: h, { try served.parse($0, chat: chat) }) { handler, ctx, job in
            handler.submit(job, context: ctx, head: h, started: started)
        }
    }

    /// Submits a parsed request to the engine and answers it, streamed or whole (on the loop).
    func submit(_ job: CompletionJob, context: ChannelHandlerContext, head h: HTTPRequestHead, started: Double) {
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let served = server.served
        if job.stream {
            // the stream: chunks as tokens come; a finished sample sends its finish_reason
            var headSent = false
            func sendHead() {
                guard !headSent else { return }
                headSent = true
                var headers = HTTPHeaders()
                headers.add(name: "content-type", value: "text/event-stream")
                headers.add(name: "cache-control", value: "no-cache")
                addCORS(&headers)
                headers.add(name: "connection", value: h.isKeepAlive ? "keep-alive" : "close")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .ok, headers: headers))), promise: nil)
            }
            let toolStreams = NIOLoopBound(ToolStreamBox(), eventLoop: loop)
            let onEvent: @Sendable (ServingEngine.Event) -> Void = { ev in
                loop.execute {
                    let (handler, ctx) = bound.value
                    guard handler.open else { return }
                    var text = ""
                    var finished = false
                    var completionTokens = 0
                    switch ev {
                    case let .token(sample, tok):
                        var piece = tok.text
                        if let format = job.toolFormat {
                            // content until a call may start; a call waits for the end
                            piece = toolStreams.value.streams[sample, default: ToolCallStream(format: format)].push(served.toolPiece(tok, format: format))
                        }
                        if piece.isEmpty && !(job.logprobs && tok.id >= 0) { return }
                        text = HTTPHandler.sse(served.chunk(job, sample: sample, text: piece, token: tok))
                    case let .finished(outs):
                        for o in outs {
                            if let format = job.toolFormat {
                                let (rest, calls) = toolStreams.value.streams[o.sample, default: ToolCallStream(format: format)].finish()
                                if !rest.isEmpty { text += HTTPHandler.sse(served.chunk(job, sample: o.sample, text: rest)) }
                                if !calls.isEmpty { text += HTTPHandler.sse(served.toolCallChunk(job, sample: o.sample, calls: calls)); continue }
                            }
                            text += HTTPHandler.sse(served.chunk(job, sample: o.sample, text: job.chat ? nil : "", finish: o.stopReason))
                        }
                        completionTokens = outs.reduce(0) { $0 + $1.ids.count }
                        if job.includeUsage { text += HTTPHandler.sse(served.usageChunk(job, completion: completionTokens)) }
                        text += "data: [DONE]\n\n"
                        finished = true
                    case let .failed(msg):
                        text = HTTPHandler.sse(APIError(500, msg, type: "server_error").json) + "data: [DONE]\n\n"
                        finished = true
                    }
                    handler.writeChunk(ctx, text, end: finished, head: h, started: started, completion: completionTokens)
                }
            }
            do {
                sendHead()
                // the role first, as OpenAI's stream does
                if job.chat {
                    var first = ""
                    for s in 0..<job.n { first += HTTPHandler.sse(served.chunk(job, sample: s, text: "", role: true)) }
                    writeChunk(context, first, end: false, head: h, started: started, completion: 0)
                } else {
                    context.flush()
                }
                active = try server.engine.submit(job.request, onEvent: onEvent)
            } catch {
                let e = apiError(error)
                writeChunk(context, HTTPHandler.sse(e.json) + "data: [DONE]\n\n", end: true, head: h, started: started, completion: 0, status: e.status)
            }
            return
        }
        // whole response: collect tokens (for logprobs), answer when finished
        let collected = NIOLoopBound(TokenBox(), eventLoop: loop)
        let onEvent: @Sendable (ServingEngine.Event) -> Void = { ev in
            loop.execute {
                let (handler, ctx) = bound.value
                switch ev {
                case let .token(sample, tok):
                    if job.logprobs { collected.value.tokens[sample, default: []].append(tok) }
                case let .finished(outs):
                    handler.active = nil
                    guard handler.open else { return }
                    if let err = outs.first(where: { $0.stopReason == .error })?.error {
                        return handler.sendError(context: ctx, h, APIError(500, err, type: "server_error"))
                    }
                    handler.sendJSON(context: ctx, h, served.response(job, outputs: outs, tokens: collected.value.tokens), started: started)
                case let .failed(msg):
                    handler.active = nil
                    guard handler.open else { return }
                    handler.sendError(context: ctx, h, APIError(500, msg, type: "server_error"))
                }
            }
        }
        do {
            active = try server.engine.submit(job.request, onEvent: onEvent)
        } catch {
            sendError(context: context, h, apiError(error))
        }
    }

    /// One server-sent event.
    static func sse(_ v: JSONValue) -> String { "data: " + v.compact + "\n\n" }

    func apiError(_ error: Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as ServingEngine.SubmitError:
            if case .draining = e { return APIError(503, e.description, type: "unavailable") }
            return APIError(429, e.description, type: "rate_limit_exceeded", code: "rate_limit_exceeded")
        case let SamplingError.invalid(field, reason): return APIError.field(field, reason)
        default: return APIError(400, "\(error)")
        }
    }

    func writeChunk(_ context: ChannelHandlerContext, _ text: String, end: Bool, head h: HTTPRequestHead, started: Double, completion: Int, status: Int = 200) {
        if !text.isEmpty {
            var buf = context.channel.allocator.buffer(capacity: text.utf8.count)
            buf.writeString(text)
            context.write(wrapOutboundOut(.body(.byteBuffer(buf))), promise: nil)
        }
        if end {
            active = nil
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !h.isKeepAlive { done.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) } }
            server.count(status)
            server.logger.info("\(h.method) \(h.uri) \(status) stream \(completion) tokens \(String(format: "%.3fs", ProcessInfo.processInfo.systemUptime - started))")
        } else {
            context.flush()
        }
    }
}

func isDirectory(_ path: String) -> Bool {
    var dir: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &dir) && dir.boolValue
}

/// Each sample's tool-call stream of a streamed response; lives on the connection's loop.
final class ToolStreamBox { var streams: [Int: ToolCallStream] = [:] }

/// The tokens of a whole response, by sample (for its logprobs); lives on the connection's loop.
final class TokenBox { var tokens: [Int: [GeneratedToken]] = [:] }

/// Whether `a` and `b` are equal, in time that depends only on their lengths (an API key compared
/// so does not leak how much of it a guess got right).
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var diff = UInt8(a.count == b.count ? 0 : 1)
    let n = max(a.count, b.count)
    for i in 0..<n { diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0) }
    return diff == 0
}
