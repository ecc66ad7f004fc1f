import CMPI
import Foundation
import StrataTensor

/// The processes of an MPI job (`MPI_COMM_WORLD` of Open MPI): the one file that calls MPI.
/// Errors come back as values (`MPI_ERRORS_RETURN`) and are thrown naming the call and the peer.
/// Waits poll (`MPI_Iprobe` / `MPI_Test`) and sleep between polls, so a rank waiting for its
/// neighbour leaves the cores to the ranks computing (MPI's blocking calls spin; on a host with
/// as many ranks as cores a spinning rank would take a core from the one it waits for).
/// MPI is called from one thread at a time (`MPI_THREAD_SERIALIZED`).
public final class MPIWorld: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// `MPI_Get_processor_name`: the host this rank runs on.
    public let host: String
    private let comm: MPI_Comm

    /// Whether this process was started by an MPI launcher (`mpirun`, `srun`): the launchers set
    /// these variables (Open MPI's, PMIx's, Slurm's PMI).
    public static var launched: Bool {
        for name in ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"] where FileIO.environment(name) != nil { return true }
        return false
    }

    /// Ranks on this host (`OMPI_COMM_WORLD_LOCAL_SIZE`; 1 when unknown).
    public static var localRanks: Int { FileIO.environment("OMPI_COMM_WORLD_LOCAL_SIZE").flatMap { Int($0) } ?? 1 }

    public init() throws {
        var provided: Int32 = 0
        try Self.check(MPI_Init_thread(nil, nil, strata_mpi_thread_serialized(), &provided), "MPI_Init_thread")
        comm = strata_mpi_comm_world()
        try Self.check(MPI_Comm_set_errhandler(comm, strata_mpi_errors_return()), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, s: Int32 = 0
        try Self.check(MPI_Comm_rank(comm, &r), "MPI_Comm_rank")
        try Self.check(MPI_Comm_size(comm, &s), "MPI_Comm_size")
        rank = Int(r); size = Int(s)
        var name = [CChar](repeating: 0, count: Int(strata_mpi_max_processor_name()) + 1)
        var len: Int32 = 0
        if MPI_Get_processor_name(&name, &len) == strata_mpi_success() {
            host = String(decoding: name.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        } else {
            host = "?"
        }
    }

    /// "rank 2 (host)": how messages name a rank.
    public func name(_ r: Int) -> String { r == rank ? "rank \(r) (\(host))" : "rank \(r)" }

    static func check(_ rc: Int32, _ call: String, peer: Int? = nil) throws {
        guard rc != strata_mpi_success() else { return }
        var text = [CChar](repeating: 0, count: Int(strata_mpi_max_error_string()) + 1)
        var len: Int32 = 0
        _ = MPI_Error_string(rc, &text, &len)
        let message = String(decoding: text.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw MPIError.call(call, peer: peer, code: Int(rc), message: message)
    }

    // MARK: point to point

    public typealias Request = MPI_Request?
    /// A request that is already complete (`MPI_REQUEST_NULL`): what `wait` returns at once for.
    public var nullRequest: Request { strata_mpi_request_null() }

    /// Starts sending `count` bytes at `bytes` to `peer` (the bytes must stay until `wait`).
    public func startSend(_ bytes: UnsafeRawPointer, count: Int, to peer: Int, tag: Int32) throws -> Request {
        var req = strata_mpi_request_null()
        try Self.check(MPI_Isend(bytes, Int32(count), strata_mpi_byte(), Int32(peer), tag, comm, &req), "MPI_Isend", peer: peer)
        return req
    }

    /// Waits for a started send (or receive) to end, polling.
    public func wait(_ req: inout Request, peer: Int) throws {
        var done: Int32 = 0, spins = 0
        while true {
            try Self.check(MPI_Test(&req, &done, strata_mpi_status_ignore()), "MPI_Test", peer: peer)
            if done != 0 { return }
            try pause(&spins)
        }
    }

    /// Sends `count` bytes and waits until they are out.
    public func send(_ bytes: UnsafeRawPointer, count: Int, to peer: Int, tag: Int32) throws {
        var req = try startSend(bytes, count: count, to: peer, tag: tag)
        try wait(&req, peer: peer)
    }

    /// Receives the next message from `peer` with `tag` into `buffer` (grown to fit; its capacity
    /// is kept across calls) and returns its byte count.
    public func receive(from peer: Int, tag: Int32, into buffer: inout [UInt8]) throws -> Int {
        var status = MPI_Status()
        var flag: Int32 = 0, spins = 0
        while true {
            try Self.check(MPI_Iprobe(Int32(peer), tag, comm, &flag, &status), "MPI_Iprobe", peer: peer)
            if flag != 0 { break }
            try pause(&spins)
        }
        var count: Int32 = 0
        try Self.check(MPI_Get_count(&status, strata_mpi_byte(), &count), "MPI_Get_count", peer: peer)
        let n = Int(count)
        if buffer.count < n { buffer += [UInt8](repeating: 0, count: n - buffer.count) }
        try buffer.withUnsafeMutableBytes { b in
            try Self.check(MPI_Recv(b.baseAddress, count, strata_mpi_byte(), Int32(peer), tag, comm, strata_mpi_status_ignore()), "MPI_Recv", peer: peer)
        }
        return n
    }

    /// Every rank's `value`, in rank order (a collective: every rank calls it).
    public func allGather(_ value: Double) throws -> [Double] {
        var mine = value
        var all = [Double](repeating: 0, count: size)
        try Self.check(MPI_Allgather(&mine, 1, strata_mpi_double(), &all, 1, strata_mpi_double(), comm), "MPI_Allgather")
        return all
    }

    /// Polls first (a neighbour's answer is often microseconds away), then sleeps 50 us between
    /// polls; runs `idle` at each poll (expert shards answer other ranks' requests there, so a
    /// rank waiting for one rank still serves the others).
    private func pause(_ spins: inout Int) throws {
        if let idle, !inIdle {
            inIdle = true
            defer { inIdle = false }
            if try idle() { spins = 0; return }
        }
        spins += 1
        if spins > 200 { FileIO.sleep(microseconds: 50) }
    }

    /// Run while any wait polls; true when it did some work. Not run from within itself.
    public var idle: (() throws -> Bool)?
    private var inIdle = false

    /// A message with `tag` from any rank, if one has arrived: its source and byte count.
    public func probe(tag: Int32) throws -> (source: Int, bytes: Int)? {
        var status = MPI_Status()
        var flag: Int32 = 0
        try Self.check(MPI_Iprobe(strata_mpi_any_source(), tag, comm, &flag, &status), "MPI_Iprobe")
        guard flag != 0 else { return nil }
        var count: Int32 = 0
        try Self.check(MPI_Get_count(&status, strata_mpi_byte(), &count), "MPI_Get_count")
        return (Int(status.MPI_SOURCE), Int(count))
    }

    /// Whether a started send has ended (then `req` is complete).
    public func test(_ req: inout Request, peer: Int) throws -> Bool {
        var done: Int32 = 0
        try Self.check(MPI_Test(&req, &done, strata_mpi_status_ignore()), "MPI_Test", peer: peer)
        return done != 0
    }

    /// Ends the job with `code` on every rank (`MPI_Abort`): what a rank does after printing why it failed.
    public func abort(_ code: Int32) -> Never {
        _ = MPI_Abort(comm, code)
        exit(code)
    }

    /// `MPI_Finalize` (every rank, at the end).
    public func finalize() { _ = MPI_Finalize() }
}

public enum MPIError: Error, CustomStringConvertible {
    case call(String, peer: Int?, code: Int, message: String)
    public var description: String {
        switch self {
        case let .call(c, peer, code, m): return "\(c)\(peer.map { " with rank \($0)" } ?? "") failed (\(code)): \(m)"
        }
    }
}
