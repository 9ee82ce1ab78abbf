"""Metadata stores: the Store interface, the SQL implementation, the query language.

``store.base`` and ``store.query`` are layer 3 (entities and errors only);
``store.sql`` and ``store.factory`` are layer 4. Import ``open_store`` from
``runstone.store.factory``.
"""
