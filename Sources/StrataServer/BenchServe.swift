import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Strata

/// `strata bench-serve` (like `vllm bench serve`): N concurrent clients over loopback, each
/// sending streamed chat or text completions back to back; request throughput, output
/// tokens/s, time to first token and inter-token latency percentiles.
public struct ServeBenchmark: Sendable {
    public struct Result: Codable, Sendable {
        public var clients: Int
        public var requests: Int
        public var failed: Int
        public var seconds: Double
        public var promptTokens: Int
        public var outputTokens: Int
        public var requestsPerSecond: Double
        public var outputTokensPerSecond: Double
        /// milliseconds
        public var ttftP50: Double, ttftP90: Double, ttftP99: Double
        public var itlP50: Double, itlP90: Double, itlP99: Double
        public var e2eP50: Double
        /// snake_case in JSON, as every JSON output of Strata
        enum CodingKeys: String, CodingKey {
            case clients, requests, failed, seconds, promptTokens = "prompt_tokens", outputTokens = "output_tokens"
            case requestsPerSecond = "requests_per_second", outputTokensPerSecond = "output_tokens_per_second"
            case ttftP50 = "ttft_p50_ms", ttftP90 = "ttft_p90_ms", ttftP99 = "ttft_p99_ms", itlP50 = "itl_p50_ms", itlP90 = "itl_p90_ms"
            case itlP99 = "itl_p99_ms", e2eP50 = "e2e_p50_ms"
        }
    }

    public let host: String
    public let port: Int
    public let model: String

    public init(host: String = "127.0.0.1", port: Int, model: String) { self.host = host; self.port = port; self.model = model }

    /// One streamed request: its chunk arrival times (seconds from sending) and usage.
    struct Timing { var ok = false; var chunkTimes: [Double] = []; var prompt = 0; var output = 0; var total = 0.0 }

    /// Runs `clients` concurrent clients, `requestsPerClient` requests each; `body(i)` is the
    /// JSON body of request i (stream is forced on, with usage).
    public func run(clients: Int, requestsPerClient: Int, path: String = "/v1/completions", body: @escaping @Sendable (Int) -> JSONValue) -> Result {
        let lock = NSLock()
        nonisolated(unsafe) var timings: [Timing] = []
        let group = DispatchGroup()
        let t0 = Date().timeIntervalSince1970
        for c in 0..<clients {
            group.enter()
            let t = Thread {
                for r in 0..<requestsPerClient {
                    let timing = self.request(path: path, body: body(c * requestsPerClient + r))
                    lock.lock(); timings.append(timing); lock.unlock()
                }
                group.leave()
            }
            t.start()
        }
        group.wait()
        let seconds = Date().timeIntervalSince1970 - t0
        let ok = timings.filter(\.ok)
        let ttft = ok.compactMap { $0.chunkTimes.first }.map { $0 * 1000 }
        var itl: [Double] = []
        for t in ok where t.chunkTimes.count > 1 { for i in 1..<t.chunkTimes.count { itl.append((t.chunkTimes[i] - t.chunkTimes[i - 1]) * 1000) } }
        let out = ok.reduce(0) { $0 + $1.output }
        return Result(clients: clients, requests: timings.count, failed: timings.count - ok.count, seconds: seconds,
                      promptTokens: ok.reduce(0) { $0 + $1.prompt }, outputTokens: out,
                      requestsPerSecond: Double(ok.count) / seconds, outputTokensPerSecond: Double(out) / seconds,
                      ttftP50: percentile(ttft, 50), ttftP90: percentile(ttft, 90), ttftP99: percentile(ttft, 99),
                      itlP50: percentile(itl, 50), itlP90: percentile(itl, 90), itlP99: percentile(itl, 99),
                      e2eP50: percentile(ok.map { $0.total * 1000 }, 50))
    }

    func percentile(_ xs: [Double], _ p: Double) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        let rank = p / 100 * Double(s.count - 1)
        let lo = Int(rank.rounded(.down)), hi = min(lo + 1, s.count - 1)
        return s[lo] + (s[hi] - s[lo]) * (rank - Double(lo))
    }

    /// A blocking HTTP/1.0 client over a POSIX socket: sends the request, reads the SSE stream to its
    /// `data: [DONE]` (an answer in HTTP/1.1 chunks, as llama-server sends even to 1.0, is de-chunked).
    func request(path: String, body: JSONValue) -> Timing {
        var timing = Timing()
        guard case var .object(pairs) = body else { return timing }
        pairs.removeAll { $0.0 == "stream" || $0.0 == "stream_options" }
        pairs.append(("stream", .bool(true)))
        pairs.append(("stream_options", .object([("include_usage", .bool(true))])))
        let payload = Array(JSONValue.object(pairs).compact.utf8)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return timing }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &addr.sin_addr)
        let connected = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return timing }
        let head = "POST \(path) HTTP/1.0\r\nHost: \(host)\r\nContent-Type: application/json\r\nContent-Length: \(payload.count)\r\n\r\n"
        let start = Date().timeIntervalSince1970
        let bytes = Array(head.utf8) + payload
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return timing }
            sent += n
        }
        var buffer = [UInt8]()
        var raw = [UInt8]()  // chunked: bytes not yet de-chunked
        var chunked = false
        var chunk = [UInt8](repeating: 0, count: 65536)
        var headerDone = false
        var done = false
        while !done {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { break }
            let now = Date().timeIntervalSince1970 - start
            buffer.append(contentsOf: chunk[0..<n])
            if !headerDone {
                guard let end = find(buffer, Array("\r\n\r\n".utf8)) else { continue }
                let status = String(decoding: buffer[0..<end], as: UTF8.self)
                if !status.hasPrefix("HTTP/1.0 200") && !status.hasPrefix("HTTP/1.1 200") { return timing }
                chunked = status.lowercased().contains("transfer-encoding: chunked")
                buffer.removeFirst(end + 4)
                headerDone = true
                if chunked { raw = buffer; buffer.removeAll() }
            } else if chunked {
                raw.append(contentsOf: chunk[0..<n])
                buffer.removeLast(n)
            }
            // chunks are "<hex size>\r\n<bytes>\r\n"; a size of 0 ends the answer
            while chunked, let eol = find(raw, [13, 10]) {
                guard let size = Int(String(decoding: raw[0..<eol], as: UTF8.self).split(separator: ";").first ?? "", radix: 16) else { return timing }
                if size == 0 { break }
                guard raw.count >= eol + 2 + size + 2 else { break }
                buffer.append(contentsOf: raw[(eol + 2)..<(eol + 2 + size)])
                raw.removeFirst(eol + 2 + size + 2)
            }
            // events are "data: ...\n\n"
            while let end = find(buffer, [10, 10]) {
                let line = String(decoding: buffer[0..<end], as: UTF8.self)
                buffer.removeFirst(end + 2)
                guard line.hasPrefix("data: ") else { continue }
                let data = line.dropFirst(6)
                if data == "[DONE]" { done = true; break }
                guard let v = try? JSONValue.parse(String(data)) else { continue }
                if let usage = v["usage"], case let .int(p)? = usage["prompt_tokens"], case let .int(c)? = usage["completion_tokens"] {
                    timing.prompt = p; timing.output = c
                }
                if let choices = v["choices"]?.arrayValue, let first = choices.first {
                    let text = first["text"]?.stringValue ?? first["delta"]?["content"]?.stringValue ?? ""
                    if !text.isEmpty { timing.chunkTimes.append(now) }
                }
                if v["error"] != nil { return timing }
            }
        }
        timing.total = Date().timeIntervalSince1970 - start
        timing.ok = done
        return timing
    }

    func find(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        var i = 0
        while i + needle.count <= hay.count {
            if hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
            i += 1
        }
        return nil
    }
}
