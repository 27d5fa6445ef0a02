package zk

// MultiRead (zkgate patch): ZooKeeper 3.6+'s read-only multi (opcode 22,
// "multiRead"), a batch of getData and getChildren operations answered in
// one response, each operation with its own result (unlike Multi, one
// failing operation does not fail the others). See README.md.

import (
	"encoding/binary"
	"sync/atomic"
)

const opMultiRead = 22 // ZooKeeper 3.6+ (zkgate patch)

// ReadOp is one operation of a MultiRead: read Path's data and stat, or,
// with Children, list Path's children.
type ReadOp struct {
	Path     string
	Children bool
}

// ReadResult is the outcome of one ReadOp. Error is that operation's own
// error (ErrNoNode, ErrNoAuth, ...); otherwise Data and Stat (a data read)
// or Children (a listing) are set.
type ReadResult struct {
	Data     []byte
	Stat     *Stat
	Children []string
	Error    error
}

// WithMultiRead(false) makes MultiRead send each operation as its own
// request (pipelined), as it does after a server answered that it does not
// know multiRead (a server before 3.6). The default is true.
func WithMultiRead(enabled bool) connOption {
	return func(c *Conn) {
		if !enabled {
			atomic.StoreInt32(&c.noMultiRead, 1)
		}
	}
}

// MultiRead runs read operations in one request and returns their results
// in order. The operations arm no watches. A server before ZooKeeper 3.6
// answers UNIMPLEMENTED: from then on (and with WithMultiRead(false)) the
// operations are sent as one request each, all queued at once, and their
// results gathered the same way. The error is the call's: the connection
// closed, the server refused the whole request; per-operation errors are
// in the results.
func (c *Conn) MultiRead(ops ...ReadOp) ([]ReadResult, error) {
	for _, op := range ops {
		if err := validatePath(op.Path, false); err != nil {
			return nil, err
		}
	}
	if len(ops) == 0 {
		return nil, nil
	}
	if atomic.LoadInt32(&c.noMultiRead) == 0 {
		res := &multiReadResponse{}
		_, err := c.request(opMultiRead, &multiReadRequest{ops: ops}, res, nil)
		if err != ErrUnimplemented {
			if err != nil {
				return nil, err
			}
			if len(res.results) != len(ops) {
				return nil, ErrAPIError
			}
			return res.results, nil
		}
		atomic.StoreInt32(&c.noMultiRead, 1)
	}
	return c.multiReadEach(ops)
}

// multiReadEach sends each operation as its own request, all queued before
// the first answer is awaited.
func (c *Conn) multiReadEach(ops []ReadOp) ([]ReadResult, error) {
	type pending struct {
		recv   <-chan response
		data   *getDataResponse
		list   *getChildren2Response
		opErr  error // the server's answer to this operation, if an error
		called bool
	}
	ps := make([]*pending, len(ops))
	for i, op := range ops {
		p := &pending{}
		ps[i] = p
		// recvFunc runs in the receive loop before the response is
		// delivered on recv: what it sets is visible after recv.
		recvFunc := func(_ *request, h *responseHeader, _ error) {
			p.called = true
			if h.Err != 0 {
				p.opErr = h.Err.toError()
			}
		}
		if op.Children {
			p.list = &getChildren2Response{}
			p.recv = c.queueRequest(opGetChildren2, &getChildren2Request{Path: op.Path}, p.list, recvFunc)
		} else {
			p.data = &getDataResponse{}
			p.recv = c.queueRequest(opGetData, &getDataRequest{Path: op.Path}, p.data, recvFunc)
		}
	}
	out := make([]ReadResult, len(ops))
	var firstErr error
	for i, p := range ps {
		var r response
		select {
		case r = <-p.recv:
		case <-c.shouldQuit:
			return nil, ErrConnectionClosed
		}
		switch {
		case p.called && p.opErr != nil:
			out[i].Error = p.opErr
		case r.err != nil:
			if firstErr == nil {
				firstErr = r.err
			}
		case p.list != nil:
			out[i].Children = p.list.Children
		default:
			out[i].Data, out[i].Stat = p.data.Data, &p.data.Stat
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// multiReadRequest encodes as the server's MultiOperationRecord: for each
// operation a MultiHeader (type, done false, err -1) and a GetDataRequest
// or GetChildrenRequest (path, watch false), then a closing MultiHeader
// (-1, done true, -1).
type multiReadRequest struct {
	ops []ReadOp
}

func (r *multiReadRequest) Encode(buf []byte) (int, error) {
	n := 0
	header := func(typ int32, done bool) error {
		if len(buf)-n < 9 {
			return ErrShortBuffer
		}
		binary.BigEndian.PutUint32(buf[n:], uint32(typ))
		buf[n+4] = 0
		if done {
			buf[n+4] = 1
		}
		binary.BigEndian.PutUint32(buf[n+5:], uint32(0xffffffff))
		n += 9
		return nil
	}
	for _, op := range r.ops {
		typ := int32(opGetData)
		if op.Children {
			typ = opGetChildren
		}
		if err := header(typ, false); err != nil {
			return n, err
		}
		if len(buf)-n < 4+len(op.Path)+1 {
			return n, ErrShortBuffer
		}
		binary.BigEndian.PutUint32(buf[n:], uint32(len(op.Path)))
		n += 4
		n += copy(buf[n:], op.Path)
		buf[n] = 0 // watch: false
		n++
	}
	err := header(-1, true)
	return n, err
}

// multiReadResponse decodes the server's MultiResponse to a multiRead: for
// each operation a MultiHeader (type, done, err) and a GetDataResponse
// (data, stat), a GetChildrenResponse (children) or an ErrorResponse
// (err), then a MultiHeader with done set. It is decoded by hand (the
// generic decoder's reflection costs more than the reads).
type multiReadResponse struct {
	results []ReadResult
}

func (r *multiReadResponse) Decode(buf []byte) (int, error) {
	n := 0
	need := func(k int) error {
		if k < 0 || len(buf)-n < k {
			return ErrShortBuffer
		}
		return nil
	}
	i32 := func() int32 {
		v := int32(binary.BigEndian.Uint32(buf[n:]))
		n += 4
		return v
	}
	i64 := func() int64 {
		v := int64(binary.BigEndian.Uint64(buf[n:]))
		n += 8
		return v
	}
	r.results = r.results[:0]
	for {
		if err := need(9); err != nil {
			return n, err
		}
		typ := i32()
		done := buf[n] != 0
		n++
		hdrErr := i32()
		if done {
			return n, nil
		}
		var res ReadResult
		switch typ {
		case opError:
			if err := need(4); err != nil {
				return n, err
			}
			code := ErrCode(i32())
			if code == errOk {
				code = ErrCode(hdrErr)
			}
			res.Error = code.toError()
		case opGetData:
			if err := need(4); err != nil {
				return n, err
			}
			l := int(i32())
			if l >= 0 {
				if err := need(l); err != nil {
					return n, err
				}
				res.Data = make([]byte, l)
				n += copy(res.Data, buf[n:n+l])
			}
			if err := need(68); err != nil {
				return n, err
			}
			st := &Stat{}
			st.Czxid, st.Mzxid, st.Ctime, st.Mtime = i64(), i64(), i64(), i64()
			st.Version, st.Cversion, st.Aversion = i32(), i32(), i32()
			st.EphemeralOwner = i64()
			st.DataLength, st.NumChildren = i32(), i32()
			st.Pzxid = i64()
			res.Stat = st
		case opGetChildren:
			if err := need(4); err != nil {
				return n, err
			}
			count := int(i32())
			if count > 0 {
				if count > (len(buf)-n)/4 {
					return n, ErrShortBuffer
				}
				res.Children = make([]string, count)
				for j := range res.Children {
					if err := need(4); err != nil {
						return n, err
					}
					l := int(i32())
					if l < 0 {
						continue
					}
					if err := need(l); err != nil {
						return n, err
					}
					res.Children[j] = string(buf[n : n+l])
					n += l
				}
			} else if count == 0 {
				res.Children = []string{}
			}
		default:
			return n, ErrAPIError
		}
		r.results = append(r.results, res)
	}
}
